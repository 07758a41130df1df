import secrets
from functools import partial

from django.db import models

from console.teams.models import Connection, RestrictedQuerySet

#: A new webhook token: 32 URL-safe characters. A partial of the standard
#: library's function, so that migrations name it without importing the app.
new_webhook_token = partial(secrets.token_urlsafe, 24)


class ConnectionSyncQuerySet(RestrictedQuerySet):
    team_path = "connection__team"


class ConnectionSync(models.Model):
    """How a connection's cached history stands against Skyvern.

    The row is also the lease that keeps two syncs of one connection from
    running at once (`running_since`), and the resume point of a full sync
    that was cut off (`full_resume_page`).
    """

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="sync")
    # Identifies the connection in its webhook URL; the signature proves the sender.
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token)

    running_since = models.DateTimeField(null=True, blank=True)
    running_owner = models.CharField(max_length=64, blank=True, default="")
    running_full = models.BooleanField(default=False)
    progress_runs = models.PositiveIntegerField(default=0)
    full_resume_page = models.PositiveIntegerField(null=True, blank=True)

    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=300, blank=True, default="")
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    objects = ConnectionSyncQuerySet.as_manager()

    def __str__(self):
        return f"sync of {self.connection}"

    @property
    def is_running(self) -> bool:
        return self.running_since is not None

    @property
    def last_failed(self) -> bool:
        """True when the most recent sync ended in an error."""
        return bool(self.last_error_at) and (
            self.last_success_at is None or self.last_error_at >= self.last_success_at
        )
