"""The incident view across teams: the failure inbox, the bulk retries and a
run found by id in every team the person may see, and a bulk retry of one
cause across teams (one preview, one job per team).

Every page works without JavaScript; every query is the person's own
(`console.incidents.services`, which starts from `.restrict()`), and roles
are checked per team, here and again by the bulk retry service.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from console.bulk.forms import BulkRetryForm
from console.bulk.services import BulkRetryRefused
from console.runs.inbox_html import histogram_svg
from console.teams.models import RETRY, Team

from . import services

JOBS_PER_PAGE = 50
TEAM_FIELD = "team"  # the confirmation's teams, by slug
UPTO_PREFIX = "upto-"  # each team's newest run when previewed: upto-<slug>
NO_GROUP = "That is not a failure group from the failure inbox."


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


@require_GET
def failure_inbox(request):
    """Failed runs of all the person's teams by cause, most recently seen
    first; each cause names its teams with their own numbers."""
    inbox = services.inbox_across_teams(user=request.user)
    return render(
        request,
        "incidents/failure_inbox.html",
        {
            "inbox": inbox,
            "causes": [
                (cause, histogram_svg(cause.total, inbox.hours_from)) for cause in inbox.causes
            ],
        },
    )


@require_GET
def job_list(request):
    """The bulk retry jobs of all the person's teams, newest first, each
    naming its team; `created` (job numbers) lists the jobs just started."""
    jobs = services.jobs_across_teams(user=request.user)
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    created_ids = [int(value) for value in request.GET.getlist("created") if value.isdigit()]
    created = list(jobs.filter(pk__in=created_ids[:JOBS_PER_PAGE])) if created_ids else []
    return render(request, "incidents/job_list.html", {"page": page, "created": created})


@require_GET
def run_find(request):
    """A run by its Skyvern id in any of the person's teams: straight to its
    page when there is one, else the list, or "no run with that id"."""
    run_id = request.GET.get("run_id", "").strip()[:128]
    runs = services.runs_with_id(user=request.user, run_id=run_id)
    if len(runs) == 1:
        run = runs[0]
        return redirect("runs:run_detail", team_slug=run.team.slug, run_id=run.run_id)
    return render(request, "incidents/run_find.html", {"run_id": run_id, "runs": runs})


class GroupForm(forms.Form):
    group = forms.RegexField(regex=r"^[0-9a-f]{16}$", error_messages={"invalid": NO_GROUP})


def _may_retry_somewhere(user) -> None:
    if not Team.objects.restrict(user, RETRY).exists():
        raise PermissionDenied("This needs the operator role in at least one of your teams.")


def _group(request) -> str | None:
    form = GroupForm(request.POST)
    if not form.is_valid():
        messages.error(request, NO_GROUP)
        return None
    return form.cleaned_data["group"]


def _bounds(data) -> dict[str, int]:
    bounds = {}
    for name, value in data.items():
        if name.startswith(UPTO_PREFIX) and value.isdigit():
            bounds[name[len(UPTO_PREFIX) :]] = int(value)
    return bounds


def _render_preview(request, plan, options, *, status=200):
    return render(
        request,
        "incidents/group_retry_preview.html",
        {
            "plan": plan,
            "options": options,
            "team_field": TEAM_FIELD,
            "upto_fields": [
                (f"{UPTO_PREFIX}{part.team.slug}", part.selection.upto)
                for part in plan.sending_teams
            ],
        },
        status=status,
    )


@require_POST
def group_retry_preview(request):
    """What retrying one cause in every team the person may retry in would
    do, team by team; teams where they may only view are named and left out.
    Nothing is sent."""
    _may_retry_somewhere(request.user)
    group = _group(request)
    if group is None:
        return _see_other(reverse("incidents:failure_inbox"))
    options = BulkRetryForm(request.POST if "options" in request.POST else None)
    if options.is_bound:
        options.is_valid()
    include = bool(options.is_bound and options["include_already_retried"].value())
    # "Update preview" keeps to the teams the person was shown.
    teams = request.POST.getlist(TEAM_FIELD) if options.is_bound else None
    plan = services.group_retry_plan(
        user=request.user,
        group=group,
        include_already_retried=include,
        teams=teams,
        bounds=_bounds(request.POST),
    )
    return _render_preview(request, plan, options)


@require_POST
def group_retry_create(request):
    """Confirm: one bulk retry job per team shown in the preview, all or
    none, then the jobs list with each new job linked. A team posted that
    the person may not retry in is refused and nothing is created: the
    preview comes back with what they typed."""
    _may_retry_somewhere(request.user)
    group = _group(request)
    if group is None:
        return _see_other(reverse("incidents:failure_inbox"))
    options = BulkRetryForm(request.POST, confirming=True)
    valid = options.is_valid()
    include = bool(options["include_already_retried"].value())
    plan = services.group_retry_plan(
        user=request.user,
        group=group,
        include_already_retried=include,
        teams=request.POST.getlist(TEAM_FIELD),
        bounds=_bounds(request.POST),
    )
    if not valid:
        return _render_preview(request, plan, options)
    data = options.cleaned_data
    try:
        jobs = services.group_retry_create(
            user=request.user,
            plan=plan,
            reason=data["reason"],
            include_already_retried=data["include_already_retried"],
            max_steps_override=data["max_steps_override"],
            request=request,
        )
    except BulkRetryRefused as refused:
        options.add_error(None, str(refused))
        plan.refused = []  # said in the error; the preview shows the rest
        return _render_preview(request, plan, options)
    total = sum(job.total for job in jobs)
    messages.success(
        request,
        f"{len(jobs)} bulk retr{'ies' if len(jobs) != 1 else 'y'} created, one per team, "
        f"over {total} run{'s' if total != 1 else ''}. They run in the background.",
    )
    query = "&".join(f"created={job.pk}" for job in jobs)
    return _see_other(f"{reverse('incidents:job_list')}?{query}")
