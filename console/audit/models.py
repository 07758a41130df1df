"""The audit log: who did what, in which team, to what, from where.

Append-only: rows are only ever created (through `audit_record`); saving an
existing row, `update()` and `delete()` raise. The Django admin shows them
read-only.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from .words import job_kind_words


class Action(models.TextChoices):
    LOGIN = "login", "Signed in"
    LOGIN_FAILED = "login_failed", "Sign-in failed"
    LOGOUT = "logout", "Signed out"
    LOCKOUT = "lockout", "Sign-in locked"
    PASSWORD_SET = "password_set", "Password set"
    RUN_RETRY = "run_retry", "Run retried"
    RUN_RETRY_FAILED = "run_retry_failed", "Run retry failed"
    RUN_RERUN = "run_rerun", "Run rerun on the latest version"
    RUN_RERUN_FAILED = "run_rerun_failed", "Run rerun failed"
    RUN_RETRY_CHECK = "run_retry_check", "Unknown retry checked"
    RUN_RETRY_LINK = "run_retry_link", "Unknown retry linked to a run"
    RUN_WEBHOOK_REPLAY = "run_webhook_replay", "Run's webhook replayed"
    RUN_WEBHOOK_REPLAY_FAILED = "run_webhook_replay_failed", "Run's webhook replay failed"
    RUN_CANCEL = "run_cancel", "Run canceled"
    RUN_CANCEL_FAILED = "run_cancel_failed", "Run cancel failed"
    # A bulk job's actions say "Bulk job …", true of every kind of job: the
    # filter offers them so, and a row names its job's kind where it stored
    # it (`AuditEntry.action_label`).
    BULK_JOB_CREATE = "bulk_job_create", "Bulk job created"
    BULK_JOB_PAUSE = "bulk_job_pause", "Bulk job paused"
    BULK_JOB_RESUME = "bulk_job_resume", "Bulk job resumed"
    BULK_JOB_CANCEL = "bulk_job_cancel", "Bulk job canceled"
    BULK_JOB_FINISH = "bulk_job_finish", "Bulk job finished"
    BULK_JOB_CANARY_PASS = "bulk_job_canary_pass", "Bulk job canary passed"
    BULK_JOB_HALT = "bulk_job_halt", "Bulk job paused itself"
    BULK_JOB_THRESHOLD = "bulk_job_threshold", "Bulk job threshold changed"
    BULK_ITEM_CHECK = "bulk_item_check", "Unknown item checked"
    BULK_ITEM_RETRY_ANYWAY = "bulk_item_retry_anyway", "Unknown item retried anyway"
    SYNC_NOW = "sync_now", "Sync started"
    CONNECTION_CREATE = "connection_create", "Connection added"
    CONNECTION_EDIT = "connection_edit", "Connection edited"
    CONNECTION_REPLACE_KEY = "connection_replace_key", "Connection key replaced"
    CONNECTION_DELETE = "connection_delete", "Connection removed"
    CONNECTION_TEST = "connection_test", "Connection tested"
    MEMBER_ADD = "member_add", "Member added"
    MEMBER_INVITE = "member_invite", "Account created and added"
    MEMBER_ROLE_CHANGE = "member_role_change", "Member role changed"
    MEMBER_REMOVE = "member_remove", "Member removed"
    TEAM_CREATE = "team_create", "Team created"
    WEBHOOK_REJECTED = "webhook_rejected", "Webhook rejected"
    TWO_FACTOR_ON = "two_factor_on", "Two-factor sign-in turned on"
    TWO_FACTOR_OFF = "two_factor_off", "Two-factor sign-in turned off"
    TWO_FACTOR_CODE_REFUSED = "two_factor_code_refused", "Two-factor code refused"


#: How every bulk job action's label begins.
BULK_JOB = "Bulk job"


class Outcome(models.TextChoices):
    OK = "ok", "OK"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown"
    REFUSED = "refused", "Refused"


class AppendOnly(Exception):
    """Audit entries are never changed or removed."""


class AuditEntryQuerySet(models.QuerySet):
    def for_team(self, team):
        return self.filter(team=team)

    def filtered(self, *, person="", action="", target="", since=None, until=None, team=None):
        """Rows matching every filter given (see AuditFilterForm)."""
        rows = self
        if person:
            rows = rows.filter(username__icontains=person)
        if action:
            rows = rows.filter(action=action)
        if target:
            rows = rows.filter(Q(target_id=target) | Q(target_label__icontains=target))
        if since:
            rows = rows.filter(created_at__date__gte=since)
        if until:
            rows = rows.filter(created_at__date__lte=until)
        if team is not None:
            rows = rows.filter(team=team)
        return rows

    def update(self, **kwargs):
        # The one change allowed: forgetting a deleted person or team (SET_NULL).
        if kwargs and set(kwargs) <= {"user", "team"} and not any(kwargs.values()):
            return super().update(**kwargs)
        raise AppendOnly("Audit entries can't be changed.")

    def delete(self):
        raise AppendOnly("Audit entries can't be removed.")

    # Bulk writes other than creating are refused too.
    def bulk_update(self, *args, **kwargs):
        raise AppendOnly("Audit entries can't be changed.")


class AuditEntry(models.Model):
    created_at = models.DateTimeField(db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who, as they were called then (or the name typed at a failed sign-in).
    username = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=40, choices=Action.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.OK)
    # What it was done to: e.g. ("run", "wr_123", "Invoice download"), never a key.
    target_type = models.CharField(max_length=30, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    # Labels and reasons only: never an API key or a password.
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["team", "-id"], name="audit_team_newest"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnly("Audit entries can't be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("Audit entries can't be removed.")

    @property
    def job_kind_words(self) -> str | None:
        """For a row about a bulk job that stored the job's kind, the kind's
        words ("Bulk webhook replay"); None otherwise (rows written before
        the kind was stored)."""
        if not self.action.startswith("bulk_job_") or not isinstance(self.details, dict):
            return None
        return job_kind_words(self.details.get("kind"))

    @property
    def action_label(self) -> str:
        """The action as pages say it: a bulk job's by its kind, "Bulk cancel
        finished", when the row knows it, else the action's own label."""
        label = self.get_action_display()
        kind = self.job_kind_words
        return f"{kind}{label.removeprefix(BULK_JOB)}" if kind else label

    @property
    def shown_details(self) -> dict:
        """The details pages show: the job's kind goes once the action names it."""
        if self.job_kind_words is None:
            return self.details
        return {key: value for key, value in self.details.items() if key != "kind"}
