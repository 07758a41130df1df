"""The audit log pages: a team's log for its admins, everything for superusers.

Newest first, filtered by person, action, target and dates, paged by keyset
(`?before=<id>`), and exported as CSV with the same filters.
"""

import csv
import json

from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from console.spreadsheets import csv_safe
from console.teams.access import team_for
from console.teams.models import Role

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


def _page(request, form, rows, *, team=None):
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
def audit_team_log(request, team_slug):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    form, rows = _rows(request, team=team)
    return _page(request, form, rows, team=team)


@require_GET
def audit_log(request):
    _superuser_only(request)
    form, rows = _rows(request)
    return _page(request, form, rows)


class _Echo:
    def write(self, value):
        return value


def _csv(rows, filename: str) -> StreamingHttpResponse:
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
def audit_team_export(request, team_slug):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    _, rows = _rows(request, team=team)
    return _csv(rows, f"audit-{team.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv")


@require_GET
def audit_export(request):
    _superuser_only(request)
    _, rows = _rows(request)
    return _csv(rows, f"audit-all-{timezone.now():%Y%m%d-%H%M%S}.csv")
