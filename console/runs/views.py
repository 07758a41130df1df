import dataclasses

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event
from django_htmx.middleware import HtmxDetails

from console.skyvern.errors import NotRetryable
from console.teams.access import team_for
from console.teams.models import RETRY

from . import actions, checking, details, reruns, services, sessions
from .card_html import ANSWERED_FIELD
from .cards import RunCard, read_card
from .inbox import team_failure_groups
from .inbox_html import histogram_svg
from .layout import CHOICES as LAYOUT_CHOICES
from .layout import ROWS, answers_in_rows, layout_of, row_open
from .listing import (
    RunFilterForm,
    describe_filters,
    run_updates,
    stored_status_counts,
    team_run_page,
    team_status_counts,
    team_workflows,
)
from .models import COUNTED_RETRY_STATES, Retry, Run, Status
from .row_html import COLUMNS as ROW_COLUMNS
from .services import RetryRefused, run_refresh
from .templatetags.run_links import run_url
from .unknown_run import unknown_run

# Set by console.js: this browser runs the script (a hint, never trusted
# for anything but leaving work to a request the script will make).
SCRIPTED_COOKIE = "console_js"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


CARD = "runs/run_list.html#run-card"
# How long the detail page's Refresh link (without JavaScript) waits on Skyvern, in seconds.
NO_JS_REFRESH_TIMEOUT = 5.0


def _team_run(request, team, run_id) -> Run:
    # A refresh and a retry never read Skyvern's JSON, the bulk of a cached row.
    run = (
        Run.objects.restrict(request.user)
        .filter(team=team, run_id=run_id)
        .select_related("connection")
        .defer(*details.DETAIL_DEFERRED, "screenshot_urls")
        .first()
    )
    if run is None:
        raise Http404("No run with that id in this team.")
    return run


def _team_card(request, team, run_id) -> RunCard:
    card = read_card(Run.objects.restrict(request.user).filter(team=team, run_id=run_id))
    if card is None:
        raise Http404("No run with that id in this team.")
    return card


def _card_context(request, team, card: RunCard, **extra):
    # Asked from a compact row: the answer is the row (and a new run's row).
    rows = answers_in_rows(request)
    return {
        "team": team,
        "card": card,
        "can_retry": team.may[RETRY],
        "rows": rows,
        "open_card": rows and row_open(request),
        **extra,
    }


@require_GET
def run_list(request: HtmxHttpRequest, team_slug: str):
    """A team's runs, newest first; filters and search swap only the results."""
    team = team_for(request, team_slug)
    form = RunFilterForm(request.GET)
    results_only = request.htmx and request.htmx.target == "run-results"
    # The filter form is not redrawn with the results: its list of workflows
    # is read only for a whole page, kept while the team's runs are as many.
    stored_counts = None
    workflows = []
    if not results_only:
        stored_counts = stored_status_counts(request.user, team)
        workflows = team_workflows(team, runs_stored=sum(stored_counts.values()))
    form.set_workflows(workflows)
    form.is_valid()
    data = form.cleaned_data
    filters = form.filters()
    page = team_run_page(
        request.user, team, after=data.get("after"), stored_counts=stored_counts, **filters
    )
    if filters["workflow"] and not workflows:
        team_runs = Run.objects.restrict(request.user).filter(team=team)
        workflows = _workflow_named(team_runs, filters["workflow"])
    searched_id = None
    if not page.runs and page.is_first:
        searched_id = unknown_run(request.user, team, filters["search"])
    context = {
        "team": team,
        "form": form,
        "page": page,
        "filter_summary": describe_filters(filters, workflows=workflows),
        "can_retry": team.may[RETRY],
        "filter_query": _filter_query(request),
        "poll_seconds": settings.RUNS_PAGE_POLL_SECONDS,
        "unknown_run": searched_id,
        "rows": layout_of(request) == ROWS,
        "layout": layout_of(request),
        "layout_choices": LAYOUT_CHOICES,
        "row_columns": ROW_COLUMNS,
    }
    if results_only:
        return render(request, "runs/run_list.html#run-results", context)
    # Drawn with the page, so that they show without JavaScript; the poll then
    # keeps them fresh (and needn't ask for them at once). Under a search or a
    # filter they are counted, not stored: a browser running the script gets
    # the page without waiting for them, and asks for them as it loads.
    searched = {name: value for name, value in filters.items() if name != "statuses"}
    status_counts = page.status_counts
    if status_counts is None and request.COOKIES.get(SCRIPTED_COOKIE) == "1":
        context["counts_asked_on_load"] = True
        status_counts = []
    elif status_counts is None:
        status_counts = team_status_counts(request.user, team, **searched)
    counts = {value: (count, capped) for value, count, capped in status_counts}
    context["status_choices"] = [
        (value, label, ticked, *counts.get(value, (None, False)))
        for value, label, ticked in form.status_options
    ]
    return render(request, "runs/run_list.html", context)


def _workflow_named(team_runs, workflow: str) -> list[tuple[str, str]]:
    """The chosen workflow as (id, title), for the filter summary."""
    title = (
        team_runs.filter(workflow_permanent_id=workflow)
        .values_list("workflow_title", flat=True)
        .first()
    )
    return [(workflow, title)] if title else []


def _filter_query(request) -> str:
    """The current filters as a query string, without the page position."""
    query = request.GET.copy()
    query.pop("after", None)
    query.pop("since", None)
    return query.urlencode()


@require_GET
def run_list_updates(request: HtmxHttpRequest, team_slug: str):
    """What changed since the runs page was drawn, polled by the page: new
    runs for the top of the first page, and fresh counts per status."""
    team = team_for(request, team_slug)
    if not request.htmx:
        return redirect("runs:run_list", team_slug=team.slug)
    form = RunFilterForm(request.GET)
    form.is_valid()
    data = form.cleaned_data
    since = data.get("since")
    updates = run_updates(request.user, team, since=since, **form.filters())
    context = {
        "team": team,
        "updates": updates,
        "can_retry": team.may[RETRY],
        "filter_query": _filter_query(request),
        "since": updates.newest_cursor or request.GET.get("since", "") if since else "",
        "poll_seconds": settings.RUNS_PAGE_POLL_SECONDS,
        "rows": layout_of(request) == ROWS,
    }
    return render(request, "runs/run_list.html#run-updates", context)


@require_GET
def run_detail(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """Everything about one run, from the cache at once; the details section
    then fetches itself fresh from Skyvern (run_detail_refresh)."""
    team = team_for(request, team_slug)
    run = _team_run(request, team, run_id)
    # Whether the workflow moved on since the run: asked of Skyvern (kept a
    # short while), for the people who may retry a finished run.
    drift = reruns.run_drift(run) if team.may[RETRY] and run.is_terminal else None
    return _render_detail(
        request, team, run_id, "runs/run_detail.html", refresh_state="pending", drift=drift
    )


@require_GET
def run_detail_refresh(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """The detail page's details section, after asking Skyvern for the run.

    On a Skyvern failure the cache is left as it was and the section says so.
    Without JavaScript (the page's Refresh link): the run is asked of Skyvern
    all the same, waiting less, then back to the run's page, which says how it
    went.
    """
    team = team_for(request, team_slug)
    run = (
        Run.objects.restrict(request.user)
        .filter(team=team, run_id=run_id)
        .select_related("connection")
        .defer(*details.DETAIL_DEFERRED)
        .first()
    )
    if run is None:
        raise Http404("No run with that id in this team.")
    if not request.htmx:
        error = run_refresh(run=run, force=True, read_timeout=NO_JS_REFRESH_TIMEOUT)
        if error:
            messages.error(request, f"Couldn't refresh from Skyvern: {str(error).rstrip('. ')}.")
        else:
            messages.success(request, "Refreshed from Skyvern just now.")
        return redirect("runs:run_detail", team_slug=team.slug, run_id=run.run_id)
    error = run_refresh(run=run, force=True)
    # Cards on the page that show the answer to the person's own action
    # (they say so: card_html.py) are kept as they are, not redrawn.
    answered = set(request.GET.getlist(ANSWERED_FIELD))
    return _render_detail(
        request,
        team,
        run_id,
        "runs/run_detail.html#refresh",
        refresh_state="error" if error else "ok",
        skyvern_error=str(error).rstrip(". ") if error else "",
        answered=answered,
        check_session=run_id not in answered,
    )


def _render_detail(request, team, run_id: str, template: str, *, check_session=False, **extra):
    run = details.detail_queryset(request.user, team, run_id).first()
    if run is None:
        raise Http404("No run with that id in this team.")
    card = _team_card(request, team, run_id)
    if check_session and team.may[RETRY] and card.retry_offered and card.browser_session_id:
        # Only in this refresh, after the page is drawn: the Retry beside it
        # says whether the session it re-uses has closed. The Retry itself
        # never waits for this.
        state = sessions.browser_session_state(run.connection, card.browser_session_id)
        card = dataclasses.replace(card, browser_session_state=state)
    context = _card_context(
        request,
        team,
        card,
        run=run,
        **details.detail_context(team, run),
        followed=_latest_new_run(request, team, card),
        **extra,
    )
    return render(request, template, context)


def _latest_new_run(request, team, card: RunCard) -> RunCard | None:
    """The card of the run made by the run's latest retry, beside the run's
    own: the detail page follows it as the runs page does after a retry."""
    latest = card.latest_retry
    if latest is None or latest.new_run_id is None:
        return None
    try:
        return _team_card(request, team, latest.new_run_id)
    except Http404:  # gone from the cache meanwhile
        return None


@require_GET
def run_card(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """One run's card; a card that is not finished yet polls this to update itself.

    The card says which status it shows (`shown`); when the run has moved on,
    the answer also tells the page, once drawn (`run-changed`, see
    _tell_the_page): one mechanism on both pages.
    """
    team = team_for(request, team_slug)
    card = _team_card(request, team, run_id)
    if not request.htmx:
        return redirect("runs:run_detail", team_slug=team.slug, run_id=card.run_id)
    refresh_error = None
    if not card.is_terminal:
        refresh_error = run_refresh(run=_team_run(request, team, run_id))
        card = _team_card(request, team, run_id)
    response = render(
        request, CARD, _card_context(request, team, card, refresh_error=refresh_error)
    )
    if request.GET.get("shown", card.status) != card.status:
        _tell_the_page(response, card, retried_from=_retried_from_card(team, card))
    return response


def _retried_from_card(team, card: RunCard) -> dict | None:
    """The run this one retried, for the runs page to draw its card again:
    it says how its retry ended."""
    if not card.retried_from:
        return None
    return {
        "run_id": card.retried_from,
        "card_url": run_url("runs:run_card", team.slug, card.retried_from),
    }


def _tell_the_page(response, run, **more):
    """Trigger `run-changed` on the page once this answer has been drawn
    (after the swap has settled, never before): the run detail page then
    redraws its details (the retries table...), so they never land in the
    middle of the answer. Every answer to Retry, Check or "This is the retry"
    does, even one that changed nothing: what it found may be news to the
    page (a colleague's retry, a retry settled meanwhile). On the runs page,
    a retry's new run that moved on draws again the card of the run it
    retried (`retried_from`): that card says how its retry ended."""
    detail = {"run_id": run.run_id, **{k: v for k, v in more.items() if v}}
    return trigger_client_event(response, "run-changed", detail, after="settle")


@require_POST
def run_retry(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """Retry one run. With htmx: the updated card plus the new run's card.
    Without JavaScript: back to where the person was, with a message."""
    team = team_for(request, team_slug, action=RETRY)
    run = _team_run(request, team, run_id)
    try:
        seen_retries = max(0, int(request.POST.get("seen_retries", "0")))
    except ValueError:
        seen_retries = -1  # never matches: treated as a stale page
    error_message = None
    outcome = None
    try:
        outcome = services.run_retry(
            run=run,
            user=request.user,
            seen_retries=seen_retries,
            confirm_again=request.POST.get("confirm_again") == "yes",
            confirm_completed=request.POST.get("confirm_completed") == "yes",
            confirm_redo=request.POST.get("confirm_redo") == "yes",
        )
    except RetryRefused as refused:
        error_message = str(refused)
    else:
        if outcome.error is not None:
            # The recorded note says when Skyvern may have made the run anyway.
            error_message = outcome.retry.error if outcome.retry else str(outcome.error)
        elif not outcome.sent:
            error_message = _not_sent_message(outcome)

    card = _team_card(request, team, run_id)  # with its new lineage (and status)
    if outcome and isinstance(outcome.error, NotRetryable) and not card.is_terminal:
        # The service refreshed the run: Skyvern has it going still.
        error_message = (
            f"Skyvern says this run {card.not_finished_because}; "
            "it can be retried once it finishes. Nothing was retried."
        )
    new_card = None
    if outcome and outcome.sent and outcome.new_run is not None:
        new_card = _team_card(request, team, outcome.new_run.run_id)

    refresh_error = outcome.refresh_error if outcome else None
    if request.htmx:
        response = render(
            request,
            "runs/run_list.html#retry-result",
            {
                **_card_context(
                    request, team, card, card_error=error_message, refresh_error=refresh_error
                ),
                "new_card": new_card,
            },
        )
        return _tell_the_page(response, run)
    if error_message:
        messages.error(request, f"{run.run_id}: {error_message}")
    if refresh_error:
        messages.warning(request, f"{run.run_id}: couldn't refresh from Skyvern: {refresh_error}")
    elif new_card is not None:
        messages.success(request, f"Retried {run.run_id} as {new_card.run_id}.")
    # Not redirect(): it would take a `next` without "/" or "." for a view name.
    return HttpResponseRedirect(_back_to(request, team))


@require_GET
def run_retry_confirm(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """The confirmation step of retrying a run that succeeded: it says the run
    runs again, and what else the retry does. With htmx: the card, asking.
    Without JavaScript: a page with that card. Sends nothing."""
    team = team_for(request, team_slug, action=RETRY)
    card = _team_card(request, team, run_id)
    asks = card.is_terminal and card.status == Status.COMPLETED and not card.skyvern_retries
    if asks and card.browser_session_id:
        # Only here, where the person is about to confirm: is it still open?
        run = _team_run(request, team, run_id)
        state = sessions.browser_session_state(run.connection, card.browser_session_id)
        card = dataclasses.replace(card, browser_session_state=state)
    if request.htmx:
        return render(request, CARD, _card_context(request, team, card, confirming=asks))
    if not asks:
        return redirect("runs:run_detail", team_slug=team.slug, run_id=card.run_id)
    detail = reverse("runs:run_detail", args=[team.slug, card.run_id])
    context = _card_context(request, team, card, confirming=True, retry_next=detail)
    return render(request, "runs/run_retry_confirm.html", context)


@require_POST
def run_rerun(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """Rerun one run on its workflow's latest version, then back to the run's page
    (a plain form, with or without JavaScript)."""
    team = team_for(request, team_slug, action=RETRY)
    run = _team_run(request, team, run_id)
    try:
        seen_retries = max(0, int(request.POST.get("seen_retries", "0")))
    except ValueError:
        seen_retries = -1  # never matches: treated as a stale page
    try:
        outcome = reruns.run_rerun(
            run=run,
            user=request.user,
            seen_retries=seen_retries,
            confirm_again=request.POST.get("confirm_again") == "yes",
            request=request,
        )
    except RetryRefused as refused:
        messages.error(request, f"{run.run_id}: {refused}")
    else:
        if outcome.error is not None:
            message = outcome.retry.error if outcome.retry else str(outcome.error)
            messages.error(request, f"{run.run_id}: {message}")
        elif not outcome.sent:
            messages.error(request, f"{run.run_id}: {_not_sent_message(outcome)}")
        elif outcome.new_run is not None:
            messages.success(
                request,
                f"Reran {run.run_id} on version {outcome.retry.version} "
                f"as {outcome.new_run.run_id}.",
            )
    return redirect("runs:run_detail", team_slug=team.slug, run_id=run.run_id)


def _not_sent_message(outcome) -> str:
    retry = outcome.retry
    if retry is None:
        return "The page was out of date; here is the run as it is now. Nothing was sent."
    who = retry.requested_by.get_username() if retry.requested_by else "someone"
    return f"Not sent again: {who} already asked for this retry. Nothing was sent twice."


def _back_to(request, team) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("runs:run_list", kwargs={"team_slug": team.slug})


def _team_retry(run: Run, number: int) -> Retry:
    retry = Retry.objects.filter(run=run, number=number, state__in=COUNTED_RETRY_STATES).first()
    if retry is None:
        raise Http404("No such retry of this run.")
    return retry


@require_POST
def retry_check(request: HtmxHttpRequest, team_slug: str, run_id: str, number: int):
    """Ask Skyvern what it has that may be this unknown retry's new run. The
    card then shows what was found, with "This is the retry" on each
    candidate. With htmx: the card. Without JavaScript: back, with a message."""
    team = team_for(request, team_slug, action=RETRY)
    run = _team_run(request, team, run_id)
    retry = _team_retry(run, number)
    error, notice = None, None
    try:
        check = checking.retry_check(retry=retry, user=request.user, request=request)
    except RetryRefused as refused:
        error = str(refused)
    else:
        error = check.message if check.failed else None
        notice = check.message
    return _after_retry_change(request, team, run, error=error, notice=notice)


@require_POST
def retry_link(request: HtmxHttpRequest, team_slug: str, run_id: str, number: int):
    """Record, on the person's word, that a run Skyvern has is this retry's
    new run. With htmx: the card. Without JavaScript: back, with a message."""
    team = team_for(request, team_slug, action=RETRY)
    run = _team_run(request, team, run_id)
    retry = _team_retry(run, number)
    error, notice = None, None
    try:
        new_run = checking.retry_link(
            retry=retry, run_id=request.POST.get("run_id", ""), user=request.user, request=request
        )
    except RetryRefused as refused:
        error = str(refused)
    else:
        notice = f"{new_run.run_id} linked as the new run of this retry."
    return _after_retry_change(request, team, run, error=error, notice=notice)


def _after_retry_change(request, team, run, *, error, notice):
    if request.htmx:
        card = _team_card(request, team, run.run_id)  # as it is now
        response = render(request, CARD, _card_context(request, team, card, card_error=error))
        return _tell_the_page(response, card)
    if error:
        messages.error(request, f"{run.run_id}: {error}")
    else:
        messages.success(request, f"{run.run_id}: {notice}")
    return HttpResponseRedirect(_back_to(request, team))


@require_GET
def failure_inbox(request: HtmxHttpRequest, team_slug: str):
    """The team's failed runs by cause, most recently seen first, with what
    retrying each cause did; each cause links to its runs and a bulk retry."""
    team = team_for(request, team_slug)
    # The counts the database keeps per group, not the team's failed runs.
    inbox = team_failure_groups([team.pk])
    return render(
        request,
        "runs/failure_inbox.html",
        {
            "team": team,
            "inbox": inbox,
            "groups": [(group, histogram_svg(group, inbox.hours_from)) for group in inbox.groups],
            "can_retry": team.may[RETRY],
        },
    )


def _seen(request, name: str) -> int:
    try:
        return max(0, int(request.POST.get(name, "0")))
    except ValueError:
        return -1  # never matches: treated as a stale page


def _action_message(outcome, what: str) -> str | None:
    """What the person is told when a replay or cancel did not simply go."""
    if outcome.error is not None:
        return outcome.action.error if outcome.action else str(outcome.error)
    if not outcome.sent:
        action = outcome.action
        if action is None:
            return "The page was out of date; here is the run as it is now. Nothing was sent."
        who = action.requested_by.get_username() if action.requested_by else "someone"
        return f"Not sent again: {who} already asked for this {what}. Nothing was sent twice."
    return None


@require_POST
def run_webhook_replay(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """Send a webhook-only failure's webhook again (no browser work redone);
    to another URL only for an admin. With htmx: the card, which shows the
    receiver's answer. Without JavaScript: back, with a message."""
    team = team_for(request, team_slug, action=RETRY)
    run = _team_run(request, team, run_id)
    error, notice = None, None
    try:
        outcome = actions.run_webhook_replay(
            run=run,
            user=request.user,
            seen_replays=_seen(request, "seen_replays"),
            webhook_url=request.POST.get("webhook_url", ""),
            request=request,
        )
    except RetryRefused as refused:
        error = str(refused)
    else:
        error = _action_message(outcome, "webhook replay")
        if error is None:
            replay = outcome.action
            notice = (
                f"Webhook replayed: HTTP {replay.status_code}"
                if replay.status_code is not None
                else f"Webhook replayed; the receiver didn't answer ({replay.error})"
            )
    return _after_retry_change(request, team, run, error=error, notice=notice)


@require_http_methods(["GET", "POST"])
def run_cancel(request: HtmxHttpRequest, team_slug: str, run_id: str):
    """Cancel a run still going, after a confirmation step: GET asks (the
    card, with htmx; a page of its own without JavaScript), POST with the
    confirmation cancels. With htmx: the card. Without JavaScript: back."""
    team = team_for(request, team_slug, action=RETRY)
    run = _team_run(request, team, run_id)
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        card = _team_card(request, team, run_id)
        context = _card_context(request, team, card, confirm_cancel=not card.is_terminal)
        if request.htmx:
            return render(request, CARD, context)
        return render(request, "runs/run_cancel.html", context)
    error, notice = None, None
    try:
        outcome = actions.run_cancel(
            run=run,
            user=request.user,
            seen_cancels=_seen(request, "seen_cancels"),
            request=request,
        )
    except RetryRefused as refused:
        error = str(refused)
    else:
        error = _action_message(outcome, "cancel")
        if error is None:
            run.refresh_from_db(fields=["status"])
            notice = f"Cancel sent; Skyvern has the run as {run.get_status_display().lower()}."
    return _after_retry_change(request, team, run, error=error, notice=notice)
