from copy import copy

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.skyvern import (
    KeyRejected,
    SkyvernError,
    SkyvernServerError,
    SkyvernTimeout,
    SkyvernUnreachable,
)
from console.sync.services import sync_state_for

from .access import team_for
from .clients import client_for, forget_session
from .forms import ConnectionEditForm, ConnectionForm, ReplaceKeyForm
from .models import Connection, Role, Team
from .secrets import ApiKeyUnreadable


@require_GET
def home(request):
    """Pick a team; someone in exactly one team goes straight to its runs."""
    teams = list(Team.objects.for_user(request.user))
    if len(teams) == 1:
        return redirect("runs:run_list", team_slug=teams[0].slug)
    return render(request, "teams/home.html", {"teams": teams})


def _connection(request, team, pk) -> Connection:
    return get_object_or_404(Connection.objects.for_user(request.user), team=team, pk=pk)


@require_GET
def connection_list(request, team_slug):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    connections = list(team.connections.all())
    for connection in connections:
        # Admins only: the URL holds the token that routes deliveries to this connection.
        token = sync_state_for(connection).webhook_token
        connection.webhook_url = request.build_absolute_uri(
            reverse("skyvern_webhook", args=[token])
        )
    return render(
        request,
        "teams/connection_list.html",
        {"team": team, "connections": connections, "can_manage": True},
    )


@require_http_methods(["GET", "POST"])
def connection_create(request, team_slug):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    form = ConnectionForm(request.POST or None, team=team)
    if (
        request.method == "POST"
        and form.is_valid()
        and (connection := form.save_unless_label_taken())
    ):
        messages.success(request, f"Connection “{connection.label}” added.")
        return redirect("teams:connection_list", team_slug=team.slug)
    return render(
        request, "teams/connection_form.html", {"team": team, "form": form, "adding": True}
    )


@require_http_methods(["GET", "POST"])
def connection_edit(request, team_slug, pk):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    connection = _connection(request, team, pk)
    # The form edits a copy: a rejected form must not show its values as saved.
    form = ConnectionEditForm(request.POST or None, instance=copy(connection), team=team)
    if request.method == "POST" and form.is_valid() and (saved := form.save_unless_label_taken()):
        connection = saved
        forget_session(connection.pk)
        messages.success(request, f"Connection “{connection.label}” saved.")
        return redirect("teams:connection_list", team_slug=team.slug)
    return render(
        request,
        "teams/connection_form.html",
        {"team": team, "form": form, "connection": connection},
    )


@require_http_methods(["GET", "POST"])
def connection_replace_key(request, team_slug, pk):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    connection = _connection(request, team, pk)
    form = ReplaceKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        connection.set_api_key(form.cleaned_data["api_key"])
        connection.save(update_fields=["api_key_encrypted", "api_key_last4", "updated_at"])
        forget_session(connection.pk)
        messages.success(request, f"The API key of “{connection.label}” was replaced.")
        return redirect("teams:connection_list", team_slug=team.slug)
    return render(
        request,
        "teams/connection_key_form.html",
        {"team": team, "form": form, "connection": connection},
    )


@require_http_methods(["GET", "POST"])
def connection_delete(request, team_slug, pk):
    team = team_for(request, team_slug, needs=Role.ADMIN)
    connection = _connection(request, team, pk)
    if request.method == "POST":
        label = connection.label
        forget_session(connection.pk)
        connection.delete()
        messages.success(request, f"Connection “{label}” and its cached runs were removed.")
        return redirect("teams:connection_list", team_slug=team.slug)
    return render(
        request,
        "teams/connection_confirm_delete.html",
        {"team": team, "connection": connection, "run_count": connection.runs.count()},
    )


@require_POST
def connection_test(request, team_slug, pk):
    """Try the key with the cheapest Skyvern call and say what happened."""
    team = team_for(request, team_slug, needs=Role.ADMIN)
    connection = _connection(request, team, pk)
    ok = False
    try:
        client_for(connection).check_key()
        ok, message = True, "OK — Skyvern accepted the key."
    except KeyRejected:
        message = "Key rejected — Skyvern did not accept this API key."
    except SkyvernUnreachable:
        message = "Skyvern unreachable — check the base URL, or try again later."
    # A key check only reads, so "may or may not have acted" doesn't apply here.
    except SkyvernTimeout:
        message = "No answer from Skyvern in time — it may be overloaded; try again later."
    except SkyvernServerError as error:
        message = f"Skyvern had an internal error (HTTP {error.status_code}) — try again later."
    except SkyvernError as error:
        message = f"Skyvern answered, but not as expected: {error}"
    except ApiKeyUnreadable:
        message = "The stored key can't be decrypted with this console's keys; replace the key."
    context = {"team": team, "connection": connection, "ok": ok, "message": message}
    if request.htmx:
        return render(request, "teams/connection_list.html#test-result", context)
    (messages.success if ok else messages.error)(request, f"{connection.label}: {message}")
    return redirect("teams:connection_list", team_slug=team.slug)
