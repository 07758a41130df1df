from django.contrib import admin

from .models import Retry, Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """A read-mostly view for engineers; support staff use the runs page."""

    list_display = ["run_id", "team", "status", "workflow_title", "created_at", "retried_from"]
    list_filter = ["status", "team"]
    search_fields = ["run_id", "workflow_title"]
    list_select_related = ["team", "retried_from"]
    raw_id_fields = ["retried_from", "retried_by", "connection", "team"]


@admin.register(Retry)
class RetryAdmin(admin.ModelAdmin):
    list_display = ["run", "number", "state", "requested_by", "requested_at", "new_run"]
    list_filter = ["state"]
    raw_id_fields = ["run", "new_run", "requested_by"]
