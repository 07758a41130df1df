"""Who may sign in with the identity provider, and which team roles they get.

Rules, each applied at every sign-in with the provider:
- the email must be there, not marked unverified, and (with
  OIDC_ALLOWED_EMAIL_DOMAINS) in one of the allowed domains;
- an account is found by that email (case-insensitive) or made for it, named
  by the email and without a password;
- for every team named in OIDC_GROUP_ROLES, the person's groups decide their
  role there: the highest role any of their groups maps to, and no
  membership when none does. Teams the mapping doesn't name are left as the
  team admins set them ("no role until an admin adds you").
"""

import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from console.audit.models import Action
from console.audit.services import audit_record
from console.teams.models import Membership, Role, Team

from .config import group_roles, provider_name

log = logging.getLogger("console.oidc")

RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Refusal:
    """Why the provider's answer does not sign this person in (shown to them)."""

    reason: str
    message: str


def claim_email(claims: dict) -> str:
    email = claims.get("email")
    return email.strip() if isinstance(email, str) else ""


def claim_groups(claims: dict, claim: str) -> list[str]:
    groups = claims.get(claim) or []
    if isinstance(groups, str):
        groups = [groups]
    return [str(group) for group in groups if isinstance(group, str | int)]


def sign_in_refusal(claims: dict, *, allowed_domains: list[str]) -> Refusal | None:
    """None when the claims may sign in; otherwise why not."""
    email = claim_email(claims)
    name = provider_name()
    if "@" not in email:
        return Refusal(
            "no email",
            f"{name} did not tell the console your email address, so you can't sign in with it.",
        )
    if claims.get("email_verified") is False:
        return Refusal(
            "email not verified",
            f"{name} says your email address {email} is not verified, "
            "so you can't sign in with it.",
        )
    domain = email.rsplit("@", 1)[1].lower()
    if allowed_domains and domain not in allowed_domains:
        return Refusal(
            f"email domain {domain} not allowed",
            f"Accounts at {domain} can't sign in to this console. "
            f"Sign in with your {', '.join(allowed_domains)} account instead.",
        )
    return None


class AccountRefused(Exception):
    def __init__(self, refusal: Refusal):
        super().__init__(refusal.reason)
        self.refusal = refusal


def account_for(email: str):
    """The account with this email, or a new one named by it (no password:
    it signs in through the provider only, until someone sets one).
    Raises AccountRefused when no one account is clearly that person's."""
    User = get_user_model()
    matches = list(User.objects.filter(email__iexact=email)[:2])
    if len(matches) > 1:
        raise AccountRefused(
            Refusal(
                "several accounts have this email",
                f"Several console accounts have the email {email}: ask an admin "
                "to remove or change all but one.",
            )
        )
    if matches:
        return matches[0]
    username = email.lower()[:150]
    if User.objects.filter(username__iexact=username).exists():
        # Someone else's account, by name: never hand it over, never rename it.
        raise AccountRefused(
            Refusal(
                "an account of another email has this name",
                f"A console account is called {username} but has another email "
                "address: ask an admin to give it yours, or to rename it.",
            )
        )
    user = User(username=username, email=email)
    user.set_unusable_password()
    user.save()
    log.info("account made for an identity provider sign-in user=%s", user.pk)
    return user


def mapped_roles(groups: list[str]) -> dict[str, str | None]:
    """team slug -> the role the person's groups give there (None: no role),
    for every team the mapping names."""
    roles: dict[str, str | None] = {}
    for entry in group_roles():
        roles.setdefault(entry.team_slug, None)
        if entry.group in groups:
            current = roles[entry.team_slug]
            if current is None or RANK[Role(entry.role)] > RANK[Role(current)]:
                roles[entry.team_slug] = entry.role
    return roles


def team_roles_apply(*, user, groups: list[str], request=None) -> dict[str, str | None]:
    """Make the person's memberships in the mapped teams match their groups;
    each change is audited as a member change made by the provider.
    Returns team slug -> role now held (None: none), for the mapped teams."""
    wanted = mapped_roles(groups)
    teams = {team.slug: team for team in Team.objects.filter(slug__in=wanted)}
    for slug in wanted.keys() - teams.keys():
        log.warning("OIDC_GROUP_ROLES names a team that does not exist: %s", slug)
    held: dict[str, str | None] = {}
    for slug, team in sorted(teams.items()):
        role = wanted[slug]
        with transaction.atomic():
            Team.objects.select_for_update().get(pk=team.pk)  # one member change at a time
            membership = Membership.objects.filter(team=team, user=user).first()
            via = {"by": f"{provider_name()} groups"}
            if role is None and membership is not None:
                if membership.role == Role.ADMIN and not team.memberships.filter(
                    role=Role.ADMIN
                ).exclude(pk=membership.pk).exists():
                    # The team's last admin stays, as when an admin removes members.
                    log.warning("kept the last admin of %s user=%s", slug, user.pk)
                    held[slug] = membership.role
                    continue
                membership.delete()
                audit_record(
                    action=Action.MEMBER_REMOVE, request=request, user=user, team=team,
                    target=user, details={"role": membership.role, **via},
                )
            elif role is not None and membership is None:
                Membership.objects.create(team=team, user=user, role=role)
                audit_record(
                    action=Action.MEMBER_ADD, request=request, user=user, team=team,
                    target=user, details={"role": role, **via},
                )
            elif role is not None and membership.role != role:
                before = membership.role
                membership.role = role
                membership.save(update_fields=["role"])
                audit_record(
                    action=Action.MEMBER_ROLE_CHANGE, request=request, user=user, team=team,
                    target=user, details={"from": before, "to": role, **via},
                )
        held[slug] = role
    return held
