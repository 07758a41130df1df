from copy import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import PasswordResetConfirmView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.audit.models import Action
from console.audit.services import audit_record
from console.audit.views import audit_log_csv, audit_log_page

from . import keys
from . import services as member_services
from .access import allowed, my_teams, team_for
from .clients import forget_session
from .forms import (
    ConnectionEditForm,
    ConnectionForm,
    MemberAddForm,
    MemberInviteForm,
    MemberRoleForm,
    ReplaceKeyForm,
    TeamCreateForm,
)
from .models import MANAGE, VIEW, Connection, Membership, Role


@require_GET
def home(request):
    """Pick a team; someone in exactly one team goes straight to its runs."""
    teams = my_teams(request.user)  # the switcher's list too: one query for both
    if len(teams) == 1:
        return redirect("runs:run_list", team_slug=teams[0].slug)
    return render(request, "teams/home.html", {"teams": teams})


def _connection(request, team, pk) -> Connection:
    return get_object_or_404(Connection.objects.restrict(request.user, MANAGE), team=team, pk=pk)


@require_GET
def connection_list(request, team_slug):
    """The team's connections; the sync app draws their webhooks below them."""
    team = team_for(request, team_slug, action=MANAGE)
    connections = team.connections.order_by("label")
    return render(request, "teams/connection_list.html", {"team": team, "connections": connections})


UNTESTED_ADDED = (
    "Connection “{label}” added, but its key is untested: Skyvern could not check it. "
    "Use “Test connection” once Skyvern answers."
)
UNTESTED_REPLACED = (
    "The API key of “{label}” was replaced, but the new key is untested: Skyvern could not "
    "check it. Use “Test connection” once Skyvern answers."
)


def _vet_key(form, *, base_url, connection=None) -> bool | None:
    """Test the form's key (keys.key_vet): whether it was tested, or None
    with the reason on the form, and the checkbox that lets the admin go on."""
    try:
        return keys.key_vet(
            base_url=base_url,
            api_key=form.cleaned_data["api_key"],
            connection=connection,
            **form.key_check_choices(),
        )
    except keys.KeyRefused as refused:
        form.add_error("api_key", str(refused))
    except keys.KeyUntested as untested:
        form.add_error(None, str(untested))
        form.offer_save_untested()
    except keys.KeyOfAnotherOrg as other:
        form.add_error(None, str(other))
        form.offer_other_org_confirmation(other.cached_runs)
    return None


@require_http_methods(["GET", "POST"])
def connection_create(request, team_slug):
    """Add a connection; its key is tested first (refused keys are never saved)."""
    team = team_for(request, team_slug, action=MANAGE)
    form = ConnectionForm(request.POST or None, team=team)
    if (
        request.method == "POST"
        and form.is_valid()
        and (tested := _vet_key(form, base_url=form.cleaned_data["base_url"])) is not None
    ):
        form.instance.key_untested = not tested
        if connection := form.save_unless_label_taken():
            audit_record(
                action=Action.CONNECTION_CREATE,
                request=request,
                team=team,
                target=connection,
                details={
                    "base_url": connection.base_url,
                    "key": connection.masked_key,
                    "tested": tested,
                },
            )
            if tested:
                messages.success(request, f"Connection “{connection.label}” added.")
            else:
                messages.warning(request, UNTESTED_ADDED.format(label=connection.label))
            return redirect("teams:connection_list", team_slug=team.slug)
    return render(
        request, "teams/connection_form.html", {"team": team, "form": form, "adding": True}
    )


@require_http_methods(["GET", "POST"])
def connection_edit(request, team_slug, pk):
    team = team_for(request, team_slug, action=MANAGE)
    connection = _connection(request, team, pk)
    # The form edits a copy: a rejected form must not show its values as saved.
    form = ConnectionEditForm(request.POST or None, instance=copy(connection), team=team)
    if request.method == "POST" and form.is_valid() and (saved := form.save_unless_label_taken()):
        changes = {
            name: {"from": getattr(connection, name), "to": getattr(saved, name)}
            for name in ("label", "base_url")
            if getattr(connection, name) != getattr(saved, name)
        }
        audit_record(
            action=Action.CONNECTION_EDIT,
            request=request,
            team=team,
            target=saved,
            details={"changes": changes},
        )
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
    """Replace the key once it is tested; a refused key leaves the old one in place."""
    team = team_for(request, team_slug, action=MANAGE)
    connection = _connection(request, team, pk)
    form = ReplaceKeyForm(request.POST or None)
    if (
        request.method == "POST"
        and form.is_valid()
        and (tested := _vet_key(form, base_url=connection.base_url, connection=connection))
        is not None
    ):
        keys.connection_key_replace(
            connection=connection,
            api_key=form.cleaned_data["api_key"],
            tested=tested,
            request=request,
        )
        if tested:
            messages.success(request, f"The API key of “{connection.label}” was replaced.")
        else:
            messages.warning(request, UNTESTED_REPLACED.format(label=connection.label))
        return redirect("teams:connection_list", team_slug=team.slug)
    return render(
        request,
        "teams/connection_key_form.html",
        {"team": team, "form": form, "connection": connection},
    )


@require_http_methods(["GET", "POST"])
def connection_delete(request, team_slug, pk):
    team = team_for(request, team_slug, action=MANAGE)
    connection = _connection(request, team, pk)
    if request.method == "POST":
        label = connection.label
        forget_session(connection.pk)
        audit_record(
            action=Action.CONNECTION_DELETE,
            request=request,
            team=team,
            target=connection,
            details={"base_url": connection.base_url, "runs": connection.runs.count()},
        )
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
    """Try the key with the cheapest Skyvern call, check it sees this
    connection's cached runs, and say what happened."""
    team = team_for(request, team_slug, action=MANAGE)
    connection = _connection(request, team, pk)
    result = keys.connection_key_test(connection=connection, request=request)
    ok, message = result.ok, result.message
    context = {
        "team": team,
        "connection": connection,
        "ok": ok,
        "message": message,
        "cleared_untested": result.cleared_untested,
    }
    if request.htmx:
        return render(request, "teams/connection_list.html#test-result", context)
    (messages.success if ok else messages.error)(request, f"{connection.label}: {message}")
    return redirect("teams:connection_list", team_slug=team.slug)


# --- members (team admins) and new teams (superusers) ---------------------------------------


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _members_page(request, team, *, add_form=None, invite_form=None, status=200):
    memberships = team.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "teams/members.html",
        {
            "team": team,
            "memberships": memberships,
            "roles": Role.choices,
            "add_form": add_form or MemberAddForm(),
            "invite_form": invite_form or MemberInviteForm(),
        },
        status=status,
    )


def _membership(team, pk) -> Membership:
    if pk > 2**63 - 1:  # no such row; and more than SQLite can even compare
        raise Http404("No such member.")
    return get_object_or_404(Membership.objects.select_related("user"), team=team, pk=pk)


@require_GET
def member_list(request, team_slug):
    team = team_for(request, team_slug, action=MANAGE)
    return _members_page(request, team)


@require_POST
def member_add(request, team_slug):
    """Add an existing account by username or email."""
    team = team_for(request, team_slug, action=MANAGE)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership = member_services.member_add(
                team=team,
                login=form.cleaned_data["login"],
                role=Role(form.cleaned_data["role"]),
                by=request.user,
                request=request,
            )
        except member_services.MemberRefused as refused:
            form.add_error("login", str(refused))
        else:
            messages.success(
                request,
                f"{membership.user.get_username()} added as {membership.get_role_display()}.",
            )
            return _see_other(reverse("members:member_list", args=[team.slug]))
    return _members_page(request, team, add_form=form, status=400)


@require_POST
def member_invite(request, team_slug):
    """Create an account and show its one-time password-set link, once."""
    team = team_for(request, team_slug, action=MANAGE)
    form = MemberInviteForm(request.POST)
    if form.is_valid():
        try:
            membership = member_services.member_invite(
                team=team,
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                role=Role(form.cleaned_data["role"]),
                by=request.user,
                request=request,
            )
        except member_services.MemberRefused as refused:
            form.add_error("username", str(refused))
        else:
            link = request.build_absolute_uri(member_services.password_set_path(membership.user))
            response = render(
                request,
                "teams/members_invited.html",
                {"team": team, "membership": membership, "link": link},
            )
            response["Cache-Control"] = "no-store"
            return response
    return _members_page(request, team, invite_form=form, status=400)


@require_POST
def member_role_change(request, team_slug, pk):
    team = team_for(request, team_slug, action=MANAGE)
    membership = _membership(team, pk)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
    else:
        try:
            changed = member_services.member_role_change(
                team=team,
                membership=membership,
                role=Role(form.cleaned_data["role"]),
                by=request.user,
                request=request,
            )
        except member_services.MemberRefused as refused:
            messages.error(request, str(refused))
        else:
            messages.success(
                request, f"{changed.user.get_username()} is now {changed.get_role_display()}."
            )
    return _members_redirect(request, team)


@require_http_methods(["GET", "POST"])
def member_remove(request, team_slug, pk):
    team = team_for(request, team_slug, action=MANAGE)
    membership = _membership(team, pk)
    if request.method == "POST":
        try:
            member_services.member_remove(
                team=team, membership=membership, by=request.user, request=request
            )
        except member_services.MemberRefused as refused:
            messages.error(request, str(refused))
        else:
            messages.success(
                request, f"{membership.user.get_username()} was removed from {team.name}."
            )
        return _members_redirect(request, team)
    return render(
        request, "teams/members_confirm_remove.html", {"team": team, "membership": membership}
    )


def _members_redirect(request, team):
    """Back to the members page; home if the person just left the team."""
    if not allowed(request.user, VIEW, team):
        return _see_other(reverse("home"))
    return _see_other(reverse("members:member_list", args=[team.slug]))


@require_http_methods(["GET", "POST"])
def team_create(request):
    """A new team (superusers only); then add its first admin on its members page."""
    if not request.user.is_superuser:
        raise PermissionDenied("Only superusers create teams.")
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = member_services.team_create(
                name=form.cleaned_data["name"].strip(),
                slug=form.cleaned_data["slug"],
                by=request.user,
                request=request,
            )
        except member_services.MemberRefused as refused:
            form.add_error(None, str(refused))
        else:
            messages.success(request, f"Team “{team.name}” created; now add its members.")
            return _see_other(reverse("members:member_list", args=[team.slug]))
    return render(request, "teams/members_team_form.html", {"form": form})


@method_decorator(login_not_required, name="dispatch")
class PasswordSetView(PasswordResetConfirmView):
    """The one-time link given to a new member: set a password, then sign in."""

    template_name = "teams/members_password_set.html"
    success_url = reverse_lazy("login")
    post_reset_login = False

    def form_valid(self, form):
        response = super().form_valid(form)
        audit_record(action=Action.PASSWORD_SET, request=self.request, user=self.user)
        messages.success(self.request, "Your password is set. Sign in with it.")
        return response


# --- the team's audit log (team admins) ------------------------------------------------------


@require_GET
def audit_team_log(request, team_slug):
    """The team's audit log, for its admins (the page is the audit app's)."""
    team = team_for(request, team_slug, action=MANAGE)
    return audit_log_page(request, team=team)


@require_GET
def audit_team_export(request, team_slug):
    team = team_for(request, team_slug, action=MANAGE)
    return audit_log_csv(request, team=team)
