"""Members of a team, and new teams: the rules every view goes through.

Guarantees:
- a team always keeps at least one admin: the last admin membership can be
  neither demoted nor removed. Every change to a team's members takes the
  team's row lock first (select_for_update), so two admins demoting each
  other at the same moment can't both succeed;
- every change is recorded once in the audit log (member_add,
  member_invite, member_role_change, member_remove, team_create), with
  usernames and roles only;
- a new account gets no password: it is set once, through a link made with
  Django's password-reset tokens, which stops working once a password is set.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from console.audit.models import Action
from console.audit.services import audit_record

from .models import Membership, Role, Team

LAST_ADMIN = (
    "{name} is the last admin of {team}: make someone else an admin first, "
    "so that the team can still be managed."
)


class MemberRefused(Exception):
    """The console won't make this change; the message says why, for the user."""


def _locked(team: Team) -> Team:
    """The team's row, locked until the transaction ends: one change to its
    members at a time."""
    return Team.objects.select_for_update().get(pk=team.pk)


def _is_last_admin(team: Team, membership: Membership) -> bool:
    if membership.role != Role.ADMIN:
        return False
    return not team.memberships.filter(role=Role.ADMIN).exclude(pk=membership.pk).exists()


def account_find(login: str):
    """The active account whose username (or else email) is `login`, or MemberRefused."""
    User = get_user_model()
    login = (login or "").strip()
    if not login:
        raise MemberRefused("Give a username or an email address.")
    matches = list(User.objects.filter(username__iexact=login)[:2])
    if len(matches) != 1:
        matches = list(User.objects.filter(email__iexact=login)[:2])
    if not matches:
        raise MemberRefused(f"No account is called or has the email “{login}”.")
    if len(matches) > 1:
        raise MemberRefused("Several accounts match; give the username.")
    user = matches[0]
    if not user.is_active:
        raise MemberRefused(f"The account “{user.get_username()}” is deactivated.")
    return user


def member_add(*, team: Team, login: str, role: Role, by, request=None) -> Membership:
    """Add an existing account (by username or email) to the team with `role`."""
    user = account_find(login)
    with transaction.atomic():
        _locked(team)
        if team.memberships.filter(user=user).exists():
            raise MemberRefused(f"{user.get_username()} is already a member of {team.name}.")
        membership = Membership.objects.create(team=team, user=user, role=role)
        audit_record(
            action=Action.MEMBER_ADD,
            request=request,
            user=by,
            team=team,
            target=user,
            details={"role": role},
        )
    return membership


def password_set_path(user) -> str:
    """The one-time link's path: valid until a password is set (or the
    person signs in), and for PASSWORD_RESET_TIMEOUT at most."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_set", args=[uid, default_token_generator.make_token(user)])


def member_invite(
    *, team: Team, username: str, email: str, role: Role, by, request=None
) -> Membership:
    """Create an account without a password and add it to the team with
    `role`; the caller shows `password_set_path(membership.user)` once."""
    User = get_user_model()
    try:
        with transaction.atomic():
            _locked(team)
            if User.objects.filter(username__iexact=username).exists():
                raise MemberRefused(f"An account called “{username}” exists; add it instead.")
            user = User(username=username, email=email or "")
            user.set_unusable_password()
            user.save()
            membership = Membership.objects.create(team=team, user=user, role=role)
            audit_record(
                action=Action.MEMBER_INVITE,
                request=request,
                user=by,
                team=team,
                target=user,
                details={"role": role, "email": email or ""},
            )
    except IntegrityError:
        raise MemberRefused(f"An account called “{username}” exists; add it instead.") from None
    return membership


def member_role_change(
    *, team: Team, membership: Membership, role: Role, by, request=None
) -> Membership:
    """Give a member another role; the team's last admin stays an admin."""
    with transaction.atomic():
        _locked(team)
        current = Membership.objects.select_related("user").get(pk=membership.pk, team=team)
        if current.role == role:
            return current
        if role != Role.ADMIN and _is_last_admin(team, current):
            raise MemberRefused(LAST_ADMIN.format(name=current.user.get_username(), team=team))
        before = current.role
        current.role = role
        current.save(update_fields=["role"])
        audit_record(
            action=Action.MEMBER_ROLE_CHANGE,
            request=request,
            user=by,
            team=team,
            target=current.user,
            details={"from": before, "to": role},
        )
    return current


def member_remove(*, team: Team, membership: Membership, by, request=None) -> None:
    """Take someone out of the team; never its last admin."""
    with transaction.atomic():
        _locked(team)
        current = Membership.objects.select_related("user").get(pk=membership.pk, team=team)
        if _is_last_admin(team, current):
            raise MemberRefused(LAST_ADMIN.format(name=current.user.get_username(), team=team))
        current.delete()
        audit_record(
            action=Action.MEMBER_REMOVE,
            request=request,
            user=by,
            team=team,
            target=current.user,
            details={"role": current.role},
        )


def team_create(*, name: str, slug: str, by, request=None) -> Team:
    """A new, empty team (superusers only: the view checks)."""
    with transaction.atomic():
        if Team.objects.filter(Q(name__iexact=name) | Q(slug=slug)).exists():
            raise MemberRefused("A team with that name or short name exists.")
        team = Team.objects.create(name=name, slug=slug)
        audit_record(
            action=Action.TEAM_CREATE,
            request=request,
            user=by,
            team=team,
            target=team,
            details={"slug": slug},
        )
    return team
