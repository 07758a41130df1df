"""Who may do what in a team, for views and services, by the one rule in
models.py (`LEAST_ROLE`, applied by `restrict()`).

A team the person is not a member of does not exist for them (404); a team
they belong to but with too small a role answers 403 (PermissionDenied).
"""

from functools import reduce

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404

from console.compiled import CompiledQuery

from .models import LEAST_ROLE, VIEW, Team


def scoped_by_membership(user) -> bool:
    """Whether `restrict()` gives this person's rows by their memberships
    (an active member, not a superuser): what a query compiled for one
    member stands for (console/compiled.py)."""
    return user.is_authenticated and user.is_active and not user.is_superuser


def member_stand_in(user_pk: int):
    """An active member with that id, to build a member's query once for all."""
    return get_user_model()(pk=user_pk, is_active=True)


# A member's teams with their roles, asked on every page: the same query as
# `Team.objects.roles_of(member)`, compiled once (console/compiled.py).
_MEMBER_TEAMS = CompiledQuery(lambda user_pk: Team.objects.roles_of(member_stand_in(user_pk)), -1)


def my_teams(user) -> list[Team]:
    """The teams this person may see, each with `my_role`: the team switcher.

    Read once per request, and for a member it is also where team_for() finds
    the team, so a page costs one query for both. Kept on the user object
    that the request loaded, as Django's ModelBackend keeps permissions
    (`_perm_cache`): never on the request, and never across requests.
    """
    teams = getattr(user, "_console_teams", None)
    if teams is None:
        if scoped_by_membership(user):
            teams = _MEMBER_TEAMS.instances(user.pk)
        else:
            teams = list(Team.objects.roles_of(user))
        user._console_teams = teams
    return teams


def team_for(request, slug: str, *, action: str = VIEW) -> Team:
    """The team in the URL, if the person may do `action` in it; it carries
    their role (`my_role`) and what it allows (`team.may`) for the page."""
    user = request.user
    if user.is_superuser:
        # Every team is theirs, and there may be many: just this one.
        team = Team.objects.roles_of(user).filter(slug=slug).first()
    else:
        team = next((team for team in my_teams(user) if team.slug == slug), None)
    if team is None:
        raise Http404("No team here with that name.")
    if not team.may[action]:
        raise PermissionDenied(refusal(team, action))
    return team


# The team whose pages the person came from (`?team=` on the header's link to
# the account page, then remembered in the session for that page's own
# forms): the account page keeps its navigation.
LAST_TEAM = "last_team"


def last_team(request) -> Team | None:
    """The team the person came from, if they may see it (with `my_role` and
    `may`, as team_for() gives it), else None."""
    session = getattr(request, "session", None)
    asked = request.GET.get("team", "")
    slug = asked or (session.get(LAST_TEAM, "") if session is not None else "")
    if not slug or not request.user.is_authenticated:
        return None
    try:
        team = team_for(request, slug)
    except (Http404, PermissionDenied):
        return None
    if asked and session is not None and session.get(LAST_TEAM) != team.slug:
        session[LAST_TEAM] = team.slug
    return team


def allowed(user, action: str, obj) -> bool:
    """Whether the person may do `action` on `obj` (a team, or a row of one:
    run, bulk retry job...) now, read fresh: what a service asks before it
    acts. The same rule as every list: `restrict()`."""
    return type(obj).objects.restrict(user, action).filter(pk=obj.pk).exists()


def require(user, action: str, obj) -> None:
    """Refuse (PermissionDenied) unless the person may do `action` on `obj`."""
    if not allowed(user, action, obj):
        path = type(obj).objects.all().team_path
        team = reduce(getattr, path.split("__"), obj) if path else obj
        raise PermissionDenied(refusal(team, action))


def refusal(team: Team, action: str) -> str:
    return f"This needs the {LEAST_ROLE[action].label.lower()} role in {team.name}."
