"""Who may do what in a team: one small function per verb, used by every view.

A team the person is not a member of does not exist for them (404); a team
they belong to but with too small a role answers 403.
"""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from .models import ROLE_RANK, Role, Team


def team_for(request, slug: str, *, needs: Role = Role.VIEWER) -> Team:
    team = get_object_or_404(
        Team.objects.for_user(request.user).with_role_of(request.user), slug=slug
    )
    role = Role(team.my_role) if team.my_role else None
    if role is None or ROLE_RANK[role] < ROLE_RANK[needs]:
        raise PermissionDenied(f"This needs the {needs.label.lower()} role in {team.name}.")
    request.team_role = role
    return team


def can_retry(role: Role | None) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.OPERATOR]
