from django.contrib import admin

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log is never added to, changed or pruned here."""

    list_display = ["created_at", "username", "team", "action", "outcome", "target_label"]
    list_filter = ["action", "outcome", "team"]
    search_fields = ["username", "target_id", "target_label"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
