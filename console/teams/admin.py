from django.contrib import admin

from .forms import ConnectionRulesForm
from .models import Connection, Membership, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


class ConnectionAdminForm(ConnectionRulesForm):
    """The same rules as the team's own connection form."""

    class Meta:
        model = Connection
        fields = ["label", "base_url"]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    # The key itself is managed from the team's connections page, never here:
    # so connections are not added here either (one without a key is useless).
    # The team is fixed: the connection's cached runs belong to it.
    form = ConnectionAdminForm
    list_display = ["label", "team", "base_url", "masked_key", "updated_at"]
    list_filter = ["team"]
    readonly_fields = ["team", "masked_key"]
    fields = ["team", "label", "base_url", "masked_key"]

    def has_add_permission(self, request):
        return False
