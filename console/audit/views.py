"""The audit log pages: everything for superusers, and a team's log.

Newest first, filtered by person, action, target and dates, paged by keyset
(`?before=<id>`), and exported as CSV with the same filters. A team's log
(`/t/<team>/audit/`, for its admins) is served by the teams app, which
checks who may see the team and then draws it with `audit_log_page` and
`audit_log_csv`: the audit log records for every app and imports none.
"""

import csv
import json

from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from console.spreadsheets import csv_safe

from .forms import AuditFilterForm
from .models import AuditEntry

PAGE_SIZE = 50
CSV_COLUMNS = [
    "when",
    "who",
    "team",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "target_label",
    "details",
    "ip_address",
    "user_agent",
]


def _superuser_only(request) -> None:
    if not request.user.is_superuser:
        raise PermissionDenied("Only superusers see the whole audit log.")


def _rows(request, *, team=None):
    form = AuditFilterForm(request.GET or None, all_teams=team is None)
    rows = AuditEntry.objects.all() if team is None else AuditEntry.objects.for_team(team)
    return form, rows.filtered(**form.filters()).select_related("team")


def _before(request) -> int | None:
    value = request.GET.get("before", "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def audit_log_page(request, *, team=None):
    """The log page: the team's rows, or every row when `team` is None.
    The caller has checked that the person may see them."""
    form, rows = _rows(request, team=team)
    before = _before(request)
    if before is not None:
        rows = rows.filter(id__lt=before)
    entries = list(rows.order_by("-id")[: PAGE_SIZE + 1])
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    query = request.GET.copy()
    query.pop("before", None)
    older = None
    if more:
        query["before"] = entries[-1].pk
        older = query.urlencode()
        query.pop("before")
    return render(
        request,
        "audit/audit_log.html",
        {
            "team": team,
            "form": form,
            "entries": entries,
            "older_query": older,
            "filter_query": query.urlencode(),
            "paged": before is not None,
        },
    )


@require_GET
def audit_log(request):
    _superuser_only(request)
    return audit_log_page(request)


class _Echo:
    def write(self, value):
        return value


def audit_log_csv(request, *, team=None) -> StreamingHttpResponse:
    """The page's rows, every page of them, as CSV (see `audit_log_page`)."""
    _, rows = _rows(request, team=team)
    filename = f"audit-{team.slug if team else 'all'}-{timezone.now():%Y%m%d-%H%M%S}.csv"
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(CSV_COLUMNS)
        for entry in rows.order_by("-id").iterator(chunk_size=1000):
            yield writer.writerow(
                [
                    csv_safe(value)
                    for value in (
                        entry.created_at.isoformat(),
                        entry.username,
                        entry.team.slug if entry.team else "",
                        entry.action,
                        entry.outcome,
                        entry.target_type,
                        entry.target_id,
                        entry.target_label,
                        json.dumps(entry.details, ensure_ascii=False, sort_keys=True),
                        entry.ip_address,
                        entry.user_agent,
                    )
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def audit_export(request):
    _superuser_only(request)
    return audit_log_csv(request)
