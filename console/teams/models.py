from django.conf import settings
from django.db import models
from django.db.models import Q

from .secrets import decrypt_api_key, encrypt_api_key


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


# Who may do what in a team, in one place: each action and the least role
# that may do it. A role includes everything below it; superusers act as
# admins of every team. Read by `restrict()` (in SQL) and `role_allows()`
# (for a role already read), so the two never disagree.
ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}
VIEW, RETRY, MANAGE = "view", "retry", "manage"
LEAST_ROLE = {VIEW: Role.VIEWER, RETRY: Role.OPERATOR, MANAGE: Role.ADMIN}


def roles_allowed(action: str) -> list[Role]:
    """The roles that may do `action` (view: read runs and jobs; retry:
    retry, bulk retry, check, sync; manage: connections, members, audit)."""
    least = ROLE_RANK[LEAST_ROLE[action]]
    return [role for role in Role if ROLE_RANK[role] >= least]


def role_allows(role: str | None, action: str) -> bool:
    """Whether a member with `role` (None: not a member) may do `action`."""
    return role is not None and Role(role) in roles_allowed(action)


class RestrictedQuerySet(models.QuerySet):
    """Rows of a model that belongs to a team, limited to what a person may
    do: `.restrict(user, action)`, the one way any view, service or task
    scopes team data (after NetBox's `RestrictedQuerySet.restrict`).

    `team_path` is the lookup from the model to its team ("team",
    "connection__team"); empty on Team itself.
    """

    team_path = "team"

    def restrict(self, user, action: str = VIEW):
        """The rows of the teams in which `user` may do `action`: none for an
        anonymous or deactivated person, all for a superuser."""
        roles = roles_allowed(action)
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        if self.team_path:
            # A semi-join on the person's teams: it leaves the index choice
            # of the model's own query alone (docs/performance.md).
            return self.filter(**{f"{self.team_path}__in": Team.objects.restrict(user, action)})
        if len(roles) == len(Role):
            return self.filter(memberships__user=user)  # every member may
        return self.filter(memberships__user=user, memberships__role__in=roles)


class TeamQuerySet(RestrictedQuerySet):
    team_path = ""

    def roles_of(self, user):
        """The teams this person may view, each annotated with `my_role`,
        their role in it (admin everywhere for a superuser)."""
        teams = self.restrict(user, VIEW)
        if user.is_authenticated and user.is_superuser:
            return teams.annotate(my_role=models.Value(Role.ADMIN.value))
        # From the membership row restrict() joined (Django reuses the join;
        # tests/test_isolation.py fails if it stops): a subquery per team
        # cost twice as much to build, on every page.
        return teams.annotate(my_role=models.F("memberships__role"))


class Team(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def may(self) -> dict[str, bool]:
        """What the person this team was read for may do in it, by action:
        `team.may.retry` in a template. Needs `my_role` (Team.objects.roles_of,
        team_for); without it, nothing."""
        role = getattr(self, "my_role", None)
        return {action: role_allows(role, action) for action in LEAST_ROLE}


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team"),
            models.CheckConstraint(
                condition=Q(role__in=Role.values), name="membership_role_is_known"
            ),
        ]

    def __str__(self):
        return f"{self.user} — {self.get_role_display()} of {self.team}"


class ConnectionQuerySet(RestrictedQuerySet):
    team_path = "team"


class Connection(models.Model):
    """A team's way into one Skyvern organisation: where it is and its API key.

    The key is stored encrypted and only ever leaves this model to go into
    the x-api-key header of a request to `base_url`.
    """

    DEFAULT_BASE_URL = "https://api.skyvern.com"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="connections")
    label = models.CharField(max_length=100)
    base_url = models.URLField(max_length=300, default=DEFAULT_BASE_URL)
    api_key_encrypted = models.TextField(editable=False)
    api_key_last4 = models.CharField(max_length=4, editable=False)
    # Saved while Skyvern couldn't test it ("Save without
    # testing"); cleared by the next successful "Test connection".
    key_untested = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["team", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "label"], name="connection_label_unique_in_team"
            ),
        ]

    def __str__(self):
        return f"{self.team} / {self.label}"

    def __repr__(self):
        return f"<Connection {self.pk} {self.label!r} {self.base_url} key=••••{self.api_key_last4}>"

    def set_api_key(self, api_key: str) -> None:
        self.api_key_encrypted = encrypt_api_key(api_key)
        self.api_key_last4 = api_key[-4:]

    def api_key(self) -> str:
        return decrypt_api_key(self.api_key_encrypted)

    @property
    def masked_key(self) -> str:
        return f"••••{self.api_key_last4}"


class AccountSettings(models.Model):
    """What a person chose for themselves: for now the time zone their times
    are read and typed in (an IANA name; UTC until they choose)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_settings"
    )
    time_zone = models.CharField(max_length=64, default="UTC")

    def __str__(self):
        return f"settings of {self.user}"
