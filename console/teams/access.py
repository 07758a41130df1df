"""Who may do what in a team: one small function per verb, used by every view.

A team the person is not a member of does not exist for them (404); a team
they belong to but with too small a role answers 403.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import ROLE_RANK, Role, Team


def my_teams(request) -> list[Team]:
    """The teams this person may see, each with `my_role`: the team switcher.

    Read once per request, and for a member it is also where team_for() finds
    the team, so a page costs one query for both.
    """
    teams = getattr(request, "_my_teams", None)
    if teams is None:
        teams = list(Team.objects.for_user_with_role(request.user))
        request._my_teams = teams
    return teams


def team_for(request, slug: str, *, needs: Role = Role.VIEWER) -> Team:
    user = request.user
    if user.is_superuser:
        # Every team is theirs, and there may be many: just this one.
        team = Team.objects.for_user_with_role(user).filter(slug=slug).first()
    else:
        team = next((team for team in my_teams(request) if team.slug == slug), None)
    if team is None:
        raise Http404("No team here with that name.")
    role = Role(team.my_role) if team.my_role else None
    if role is None or ROLE_RANK[role] < ROLE_RANK[needs]:
        raise PermissionDenied(f"This needs the {needs.label.lower()} role in {team.name}.")
    request.team_role = role
    return team


def can_retry(role: Role | None) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.OPERATOR]
