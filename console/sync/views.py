from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from console.audit.models import Action
from console.audit.services import audit_record
from console.background.queue import enqueue_on_commit
from console.teams.access import team_for
from console.teams.models import MANAGE, RETRY, Connection

from .models import new_webhook_token
from .services import sync_state_for, team_sync_states
from .tasks import sync_connection
from .webhooks import REFUSALS_SHOWN, webhook_refusals

STATUS = "sync/includes/sync_status.html"
# Told to the page when a sync it watched is done (templates/runs/run_list.html listens).
RUNS_SYNCED = "runs-synced"


def sync_context(request, team, states=None) -> dict:
    """What the sync status shows; `states` when the caller has just read them."""
    if states is None:
        states = team_sync_states(team)
    return {
        "team": team,
        "sync_states": states,
        "sync_running": any(state.is_running for state in states),
        "can_sync": team.may[RETRY],
    }


@require_GET
def sync_status(request, team_slug):
    """When the team's runs were last synced, and why the last sync failed.
    Polled while a sync runs; stops polling once it is done."""
    team = team_for(request, team_slug)
    context = sync_context(request, team)
    if not request.htmx:
        return redirect("runs:run_list", team_slug=team.slug)
    response = render(request, STATUS, context)
    if request.GET.get("polling") and not context["sync_running"]:
        # Done: swap in the final state and tell htmx to stop asking; the
        # runs page then draws its list and counts again (`runs-synced`).
        response.status_code = HttpResponseStopPolling.status_code
        trigger_client_event(response, RUNS_SYNCED)
    return response


@require_POST
def sync_now(request, team_slug):
    """Start a sync of every connection of the team in the background."""
    team = team_for(request, team_slug, action=RETRY)
    states = team_sync_states(team)
    started = []
    for state in states:
        if not state.is_running:
            enqueue_on_commit(sync_connection, state.connection_id)
            started.append(state.connection.label)
    audit_record(
        action=Action.SYNC_NOW,
        request=request,
        team=team,
        target=team,
        details={"started": started},
    )
    if request.htmx:
        context = sync_context(request, team, states)
        context["sync_running"] = True  # queued: show progress until the worker reports
        context["sync_queued"] = True
        return render(request, STATUS, context)
    messages.info(request, "Sync started; the runs page updates when it is done.")
    return redirect("runs:run_list", team_slug=team.slug)


# --- webhooks, on the team's Connections page (team admins) ---------------------------------


def webhooks_context(request, team) -> dict:
    """What the Connections page's webhook section shows: each connection's
    webhook URL and its newest refused deliveries. For team admins only: the
    URL holds the token that routes deliveries to the connection."""
    webhooks = [
        {
            "connection": state.connection,
            "url": request.build_absolute_uri(
                reverse("skyvern_webhook", args=[state.webhook_token])
            ),
            "refusals": webhook_refusals(state.connection),
        }
        for state in team_sync_states(team)
    ]
    return {"team": team, "webhooks": webhooks, "refusals_shown": REFUSALS_SHOWN}


@require_POST
def connection_new_webhook_url(request, team_slug, pk):
    """Give the connection a new webhook URL; deliveries to the old one are refused.

    For a URL that leaked: the signature still protects it, but nobody
    should be able to make the console check signatures at will.
    """
    team = team_for(request, team_slug, action=MANAGE)
    connection = get_object_or_404(
        Connection.objects.restrict(request.user, MANAGE), team=team, pk=pk
    )
    state = sync_state_for(connection)
    state.webhook_token = new_webhook_token()
    state.save(update_fields=["webhook_token"])
    audit_record(
        action=Action.CONNECTION_EDIT,
        request=request,
        team=team,
        target=connection,
        details={"changed": "webhook URL"},
    )
    messages.success(
        request,
        f"“{connection.label}” has a new webhook URL; update it in Skyvern. "
        "Deliveries to the old URL are refused from now on.",
    )
    return redirect("teams:connection_list", team_slug=team.slug)
