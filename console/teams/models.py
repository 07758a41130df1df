from django.conf import settings
from django.db import models
from django.db.models import Q

from .secrets import decrypt_api_key, encrypt_api_key


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


# What each role may do, in one place. A role includes everything below it.
ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class TeamQuerySet(models.QuerySet):
    def for_user(self, user):
        """The teams this person may see: all of them for a superuser,
        otherwise only those they are a member of."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(memberships__user=user)

    def for_user_with_role(self, user):
        """for_user(), each team annotated with `my_role`, the person's role
        in it (admin everywhere for a superuser)."""
        teams = self.for_user(user)
        if user.is_authenticated and user.is_superuser:
            return teams.annotate(my_role=models.Value(Role.ADMIN.value))
        # From the membership row for_user() joined (Django reuses the join;
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

    def role_of(self, user) -> Role | None:
        """The person's role in this team; superusers act as admins everywhere."""
        if not user.is_authenticated or not user.is_active:
            return None
        if user.is_superuser:
            return Role.ADMIN
        membership = self.memberships.filter(user=user).only("role").first()
        return Role(membership.role) if membership else None


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team"),
            models.CheckConstraint(
                condition=Q(role__in=Role.values), name="membership_role_is_known"
            ),
        ]

    def __str__(self):
        return f"{self.user} — {self.get_role_display()} of {self.team}"


class ConnectionQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(team__in=Team.objects.for_user(user))


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
