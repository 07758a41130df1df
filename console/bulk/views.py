"""Bulk retry pages: choose runs (on the runs page), preview, confirm, watch.

Every view works without JavaScript (plain forms, 303 after a POST); with
htmx the job page's live part polls itself while the job is active and the
action buttons swap only that part. Every query starts from the person's own
teams (`restrict`) and the team in the URL; roles are checked here, in the
view, and again by the services.
"""

import csv
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from console.runs.models import Run
from console.spreadsheets import csv_safe
from console.teams.access import team_for
from console.teams.models import RETRY

from . import services
from .forms import BulkRetryForm, ItemFilterForm, RetryAnywayForm, ThresholdForm
from .models import (
    BulkRetryItem,
    BulkRetryJob,
    ItemState,
    JobKind,
    JobState,
    Outcome,
    SkipReason,
)
from .selection import (
    MAX_IDS,
    Scope,
    Selection,
    SelectionForm,
    describe_stored,
    stored_scope,
)
from .services import BulkRetryRefused
from .summaries import bulk_job_summary


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


PAGE = "bulk/job_detail.html"
LIVE = "bulk/job_detail.html#job-live"
ITEMS_PER_PAGE = 50
JOBS_PER_PAGE = 50
POLL_SECONDS = 1


def _see_other(url: str) -> HttpResponseRedirect:
    """Post/redirect/get: a 303, so the browser GETs the next page."""
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _team_runs(request, team):
    return Run.objects.restrict(request.user).filter(team=team)


def _team_job(request, team, job_id: int) -> BulkRetryJob:
    job = (
        BulkRetryJob.objects.restrict(request.user)
        .filter(team=team, pk=job_id)
        .select_related("team", "created_by", "state_changed_by")
        .first()
    )
    if job is None:
        raise Http404("No bulk retry job with that number in this team.")
    return job


def _team_item(request, team, job_id: int, item_id: int) -> BulkRetryItem:
    job = _team_job(request, team, job_id)
    item = (
        BulkRetryItem.objects.filter(job=job, pk=item_id)
        .select_related("run", "new_run", "job__team", "job__created_by")
        .first()
    )
    if item is None:
        raise Http404("No such run in this job.")
    return item


# --- choosing and previewing --------------------------------------------------------


def _selection_refused(request, team, form: SelectionForm):
    """Back to the runs page the selection came from, saying why."""
    for problem in form.problems():
        messages.error(request, problem)
    url = reverse("runs:run_list", kwargs={"team_slug": team.slug})
    query = form.runs_page_query()
    return _see_other(f"{url}?{query}" if query else url)


def _kind(request) -> str:
    """What the bulk job does: the button that asked says (`?kind=`), else the form."""
    kind = request.GET.get("kind") or request.POST.get("kind") or JobKind.RETRY
    return kind if kind in JobKind.values else JobKind.RETRY


def _render_preview(request, team, selection: Selection, options: BulkRetryForm, *, status=200):
    kind = _kind(request)

    def ticked(name):
        return bool(kind == JobKind.RETRY and options.is_bound and options[name].value())

    preview = services.bulk_retry_preview(
        team=team,
        runs=selection.runs(_team_runs(request, team)),
        include_already_retried=ticked("include_already_retried"),
        include_skyvern_retrying=ticked("include_skyvern_retrying"),
        include_completed=ticked("include_completed"),
        kind=kind,
        check_sessions=True,
    )
    return render(
        request,
        "bulk/preview.html",
        {
            "team": team,
            "selection": selection,
            "preview": preview,
            "kind": kind,
            "kind_label": JobKind(kind).label,
            "options": options,
            "already_retried_skipped": any(
                group.reason == SkipReason.ALREADY_RETRIED for group in preview.skipped
            ),
            "skipped_reasons": {group.reason.value for group in preview.skipped},
        },
        status=status,
    )


@require_POST
def bulk_retry_preview(request: HtmxHttpRequest, team_slug: str):
    """What a bulk retry of the selection would do; nothing is sent."""
    team = team_for(request, team_slug, action=RETRY)
    form = SelectionForm(request.POST)
    if not form.is_valid():
        return _selection_refused(request, team, form)
    selection = form.selection().within(_team_runs(request, team))
    if "options" in request.POST:
        options = BulkRetryForm(request.POST)
        options.is_valid()  # show a bad max-steps value inline; the reason may wait
    else:
        # Retrying a job's failures again is the same incident: its reason is
        # offered, so the person need not type it twice.
        options = BulkRetryForm(initial={"reason": request.POST.get("suggested_reason", "")})
    return _render_preview(request, team, selection, options)


@require_POST
def bulk_retry_create(request: HtmxHttpRequest, team_slug: str):
    """Confirm: create the job over the selection as it is now, then watch it.
    Returns at once; a background worker sends the retries."""
    team = team_for(request, team_slug, action=RETRY)
    form = SelectionForm(request.POST)
    if not form.is_valid():
        return _selection_refused(request, team, form)
    selection = form.selection().within(_team_runs(request, team))
    options = BulkRetryForm(request.POST, confirming=True)
    if not options.is_valid():
        return _render_preview(request, team, selection, options)
    data = options.cleaned_data
    kind = _kind(request)
    runs = selection.runs(_team_runs(request, team))
    try:
        job = services.bulk_retry_create(
            team=team,
            user=request.user,
            runs=runs,
            reason=data["reason"],
            include_already_retried=kind == JobKind.RETRY and data["include_already_retried"],
            include_skyvern_retrying=kind == JobKind.RETRY and data["include_skyvern_retrying"],
            include_completed=kind == JobKind.RETRY and data["include_completed"],
            max_steps_override=data["max_steps_override"] if kind == JobKind.RETRY else None,
            selection=selection.as_json(count=runs.count()),
            canary_over=data["canary_over"],
            min_success_percent=data["min_success_percent"],
            kind=kind,
            rerun_on_latest=data["rerun_on_latest"],
        )
    except BulkRetryRefused as refused:
        options.add_error(None, str(refused))
        return _render_preview(request, team, selection, options)
    messages.success(
        request,
        f"{job.title} created: {job.total} run{'s' if job.total != 1 else ''}. "
        "It runs in the background; this page follows it.",
    )
    return _see_other(reverse("bulk:bulk_job_detail", args=[team.slug, job.pk]))


# --- watching ------------------------------------------------------------------------


@require_GET
def bulk_job_list(request: HtmxHttpRequest, team_slug: str):
    """The team's bulk retry jobs, newest first: who, when, why, how many, and
    what became of the retries (succeeded, failed again, still running)."""
    team = team_for(request, team_slug)
    jobs = (
        BulkRetryJob.objects.restrict(request.user)
        .filter(team=team)
        .select_related("created_by")
        .with_outcome_counts()
        .order_by("-created_at", "-id")
    )
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "bulk/job_list.html",
        {"team": team, "page": page, "can_act": team.may[RETRY]},
    )


def _live_context(request, team, job: BulkRetryJob, source, **extra) -> dict:
    """The job page's live part: progress, counts, buttons and the items shown."""
    progress = services.bulk_job_progress(job)
    follow = services.item_outcomes(job.pk)
    item_filter = ItemFilterForm(source)
    item_filter.is_valid()
    state = item_filter.cleaned_data.get("state") or ""
    outcome = item_filter.cleaned_data.get("outcome") or ""
    items = (
        BulkRetryItem.objects.filter(job=job)
        .with_outcome()
        .select_related("run", "new_run", "retry")
        .defer(*(f"{rel}__{name}" for rel in ("run", "new_run") for name in _HEAVY))
        .order_by("id")
    )
    if state:
        items = items.filter(state=state)
    if outcome:
        items = items.filter(outcome=outcome)
    paginator = Paginator(items, ITEMS_PER_PAGE)
    # The progress has just counted the items; the poll needn't count them again.
    if not outcome:
        paginator.count = progress.counts.get(state, 0) if state else progress.total
    elif not state:
        paginator.count = getattr(follow, outcome)
    page = paginator.get_page(item_filter.cleaned_data.get("page"))
    query = {"state": state} if state else {}
    if outcome:
        query["outcome"] = outcome
    if page.number > 1:
        query["page"] = page.number
    following = job.followed_at is None and not progress.active
    return {
        "team": team,
        "job": job,
        "progress": progress,
        "rate_text": _rate_text(progress.rate),
        "eta_text": _duration_text(progress.eta),
        "state_counts": [
            (value, label, progress.counts.get(value, 0)) for value, label in job.item_state_choices
        ],
        "item_state": state,
        "item_outcome": outcome,
        "follow": follow,
        "following": following,
        "polling": progress.active or following,
        "outcome_counts": [
            (value, label, getattr(follow, value)) for value, label in Outcome.choices
        ],
        "retry_failed_again": _failed_again_selection(job, follow) if team.may[RETRY] else None,
        "items": page,
        "item_query": urlencode(query),
        "can_act": team.may[RETRY],
        "poll_seconds": POLL_SECONDS,
        **extra,
    }


_HEAVY = ("raw", "output", "screenshot_urls", "search_text")


def _failed_again_selection(job: BulkRetryJob, follow) -> Selection | None:
    """The new runs that failed again, as a selection the preview reads:
    "Retry the N that failed again" previews exactly those (their retries
    then record them as their origin: original → retry → retry of the
    retry); at most a form's worth (MAX_IDS), the first ones."""
    if not follow.failed_again:
        return None
    new_runs = (
        BulkRetryItem.objects.filter(job=job)
        .outcome(Outcome.FAILED_AGAIN)
        .order_by("id")
        .values_list("new_run_id", flat=True)[:MAX_IDS]
    )
    return Selection(scope=Scope.PICKED, ids=tuple(new_runs))


def _rate_text(rate: float | None) -> str:
    if not rate:
        return ""
    return f"{rate:.0f} per minute" if rate >= 10 else f"{rate:.1f} per minute"


def _duration_text(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min"


@require_GET
def bulk_job_detail(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """One job: who started it, when and why, what it selected, and its live part."""
    team = team_for(request, team_slug)
    job = _team_job(request, team, job_id)
    context = _live_context(request, team, job, request.GET)
    context["selection_scope"] = stored_scope(job.selection)
    context["selection_text"] = describe_stored(job.selection)
    context["summary"] = bulk_job_summary(job)
    if request.htmx and request.htmx.target == "job-live":
        return render(request, LIVE, context)
    return render(request, PAGE, context)


@require_GET
def bulk_job_progress(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """The live part, polled by the job page while the job is active or its
    retries are followed. Once it has ended, the final state is swapped in and
    htmx is told to stop (286)."""
    team = team_for(request, team_slug)
    job = _team_job(request, team, job_id)
    if not request.htmx:
        return redirect("bulk:bulk_job_detail", team_slug=team.slug, job_id=job.pk)
    context = _live_context(request, team, job, request.GET)
    response = render(request, LIVE, context)
    if not context["polling"]:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@require_GET
def bulk_job_export(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """The job's items as CSV: one row per run, what became of it and when,
    and what became of its retry (the new run's outcome and, when it failed
    again, Skyvern's reason)."""
    team = team_for(request, team_slug)
    job = _team_job(request, team, job_id)
    items = (
        BulkRetryItem.objects.filter(job=job)
        .select_related("run", "new_run")
        .only(
            "state",
            "skip_reason",
            "error",
            "attempts",
            "sent_at",
            "finished_at",
            "check_note",
            "run__run_id",
            "run__workflow_permanent_id",
            "run__workflow_title",
            "new_run__run_id",
            "new_run__app_url",
            "new_run__status",
            "new_run__failure_reason",
        )
        .with_outcome()
        .order_by("id")
    )
    outcomes = dict(Outcome.choices)
    labels = dict(ItemState.choices)
    skips = dict(SkipReason.choices)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="bulk-retry-{team.slug}-{job.pk}-items.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for item in items.iterator(chunk_size=500):
        writer.writerow(
            csv_safe(value)
            for value in (
                item.run.run_id,
                item.run.workflow_permanent_id,
                item.run.workflow_title,
                item.state,
                labels.get(item.state, item.state),
                skips.get(item.skip_reason, item.skip_reason),
                item.new_run.run_id if item.new_run else "",
                item.new_run.app_url if item.new_run else "",
                item.outcome,
                outcomes.get(item.outcome, ""),
                item.new_run.status if item.new_run else "",
                item.new_run.failure_reason
                if item.outcome in (Outcome.FAILED_AGAIN, Outcome.CANCELED)
                else "",
                item.error,
                item.check_note,
                item.attempts,
                item.sent_at.isoformat() if item.sent_at else "",
                item.finished_at.isoformat() if item.finished_at else "",
            )
        )
    return response


CSV_HEADER = [
    "run_id",
    "workflow_permanent_id",
    "workflow_title",
    "state",
    "state_label",
    "skip_reason",
    "new_run_id",
    "new_run_app_url",
    "outcome",
    "outcome_label",
    "new_run_status",
    "new_run_failure_reason",
    "error",
    "check_note",
    "attempts",
    "sent_at",
    "finished_at",
]


# --- steering -------------------------------------------------------------------------


def _after_action(request, team, job, *, notice="", error=""):
    """htmx: the live part with the outcome in it. Without JS: back to the page."""
    if request.htmx:
        context = _live_context(request, team, job, request.POST, notice=notice, error=error)
        return render(request, LIVE, context)
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    url = reverse("bulk:bulk_job_detail", args=[team.slug, job.pk])
    query = _item_query(request.POST)
    return _see_other(f"{url}?{query}" if query else url)


def _item_query(source) -> str:
    form = ItemFilterForm(source)
    form.is_valid()
    query = {k: v for k, v in form.cleaned_data.items() if v}
    return urlencode(query)


def _steer(request, team_slug, job_id, service, done: str):
    team = team_for(request, team_slug, action=RETRY)
    job = _team_job(request, team, job_id)
    try:
        job = service(job=job, user=request.user)
    except BulkRetryRefused as refused:
        return _after_action(request, team, job, error=str(refused))
    return _after_action(request, team, job, notice=done)


@require_POST
def bulk_job_pause(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """Pause a job: no further run is sent; those already sent stay recorded."""
    return _steer(
        request,
        team_slug,
        job_id,
        services.bulk_retry_pause,
        "Paused: nothing more is sent until it is resumed.",
    )


@require_POST
def bulk_job_resume(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """Carry on with a paused job."""
    return _steer(request, team_slug, job_id, services.bulk_retry_resume, "Resumed.")


@require_http_methods(["GET", "POST"])
def bulk_job_cancel(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """Cancel a job, after a confirmation step: GET (or a POST without the
    confirmation) asks, saying what canceling does; the confirmed POST
    cancels. Runs not sent yet are skipped; those already sent stay recorded."""
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        team = team_for(request, team_slug, action=RETRY)
        job = _team_job(request, team, job_id)
        counts = services.item_counts(job.pk)
        filters = ItemFilterForm(request.GET if request.method == "GET" else request.POST)
        filters.is_valid()
        return render(
            request,
            "bulk/job_cancel.html",
            {
                "team": team,
                "job": job,
                "waiting": counts[ItemState.PENDING],
                "sent": job.total - counts[ItemState.PENDING] - counts[ItemState.SKIPPED],
                "item_query": _item_query(filters.data),
                "item_state": filters.cleaned_data.get("state", ""),
                "item_outcome": filters.cleaned_data.get("outcome", ""),
            },
        )
    return _steer(
        request,
        team_slug,
        job_id,
        services.bulk_retry_cancel,
        "Canceled: runs not sent yet are skipped; those already sent stay recorded.",
    )


@require_POST
def bulk_job_threshold(request: HtmxHttpRequest, team_slug: str, job_id: int):
    """Change the share of retries that must succeed for the job to go on."""
    team = team_for(request, team_slug, action=RETRY)
    job = _team_job(request, team, job_id)
    form = ThresholdForm(request.POST)
    if not form.is_valid():
        error = " ".join(form.errors.get("min_success_percent", ["Give a percentage."]))
        return _after_action(request, team, job, error=error)
    percent = form.cleaned_data["min_success_percent"]
    try:
        job = services.bulk_retry_set_threshold(
            job=job, user=request.user, min_success_percent=percent
        )
    except BulkRetryRefused as refused:
        return _after_action(request, team, job, error=str(refused))
    notice = f"Threshold set to {percent} %."
    if job.state == JobState.PAUSED:
        notice += " The job stays paused until it is resumed."
    return _after_action(request, team, job, notice=notice)


@require_POST
def bulk_item_check(request: HtmxHttpRequest, team_slug: str, job_id: int, item_id: int):
    """Look at Skyvern for the new run an unknown item may have made. The item
    then shows what was found, with "This is the retry" on each candidate;
    a run is linked by the check itself only when Skyvern names its origin."""
    team = team_for(request, team_slug, action=RETRY)
    item = _team_item(request, team, job_id, item_id)
    try:
        result = services.bulk_item_check(item=item, user=request.user, request=request)
    except BulkRetryRefused as refused:
        return _after_action(request, team, item.job, error=f"{item.run.run_id}: {refused}")
    text = f"{item.run.run_id}: {result.message}"
    if result.failed or not (result.linked or result.candidates):
        return _after_action(request, team, item.job, error=text)
    return _after_action(request, team, item.job, notice=text)


@require_http_methods(["GET", "POST"])
def bulk_item_retry_anyway(request: HtmxHttpRequest, team_slug: str, job_id: int, item_id: int):
    """Send an unknown item again, after the person confirms on this page that
    Skyvern may already have made the run."""
    team = team_for(request, team_slug, action=RETRY)
    item = _team_item(request, team, job_id, item_id)
    form = RetryAnywayForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.bulk_item_retry_anyway(item=item, user=request.user)
        except BulkRetryRefused as refused:
            messages.error(request, f"{item.run.run_id}: {refused}")
        else:
            messages.success(
                request, f"{item.run.run_id}: sent again; the job sends it through the throttle."
            )
        return _see_other(reverse("bulk:bulk_job_detail", args=[team.slug, item.job_id]))
    return render(
        request,
        "bulk/item_retry_anyway.html",
        {
            "team": team,
            "job": item.job,
            "item": item,
            "form": form,
            "is_unknown": item.state == ItemState.UNKNOWN,
            "job_canceled": item.job.state == JobState.CANCELED,
        },
    )
