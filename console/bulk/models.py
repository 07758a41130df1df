"""Bulk retry jobs: one row per job, one item per selected run, and the
per-connection throttle every job and every worker shares.

Everything a worker needs to carry on after a crash lives here: an item's
state says how far it got, `sent_at` is the lease of an item being sent, and
a connection's throttle row is the only place the request rate is kept.
"""

from django.conf import settings
from django.db import models
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from console.runs.models import Retry, Run, RunAction, Status
from console.teams.models import Connection, RestrictedQuerySet, Team


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELED = "canceled", "Canceled"
    FINISHED = "finished", "Finished"


#: A job in these states may still send something.
ACTIVE_JOB_STATES = [JobState.QUEUED, JobState.RUNNING, JobState.PAUSED]


class JobKind(models.TextChoices):
    """What a bulk job does to each of its runs."""

    RETRY = "retry", "Bulk retry"
    REPLAY_WEBHOOK = "replay_webhook", "Bulk webhook replay"
    CANCEL = "cancel", "Bulk cancel"


class ItemState(models.TextChoices):
    PENDING = "pending", "Waiting"
    SENDING = "sending", "Sending to Skyvern"
    RETRIED = "retried", "Retried"
    # A webhook replayed or a run canceled (the jobs that make no new run).
    DONE = "done", "Done"
    FAILED = "failed", "Not retried"
    SKIPPED = "skipped", "Skipped"
    UNKNOWN = "unknown", "Outcome unknown"


#: What a job that makes no retry calls its items' states (JobKind -> state -> label).
KIND_ITEM_LABELS = {
    "replay_webhook": {
        "done": "Webhook replayed",
        "failed": "Not replayed",
    },
    "cancel": {
        "done": "Cancelled",
        "failed": "Not cancelled",
    },
}

#: Items not yet settled; the job is active while it has any.
OPEN_ITEM_STATES = [ItemState.PENDING, ItemState.SENDING]
DONE_ITEM_STATES = [
    ItemState.RETRIED,
    ItemState.DONE,
    ItemState.FAILED,
    ItemState.SKIPPED,
    ItemState.UNKNOWN,
]


class Outcome(models.TextChoices):
    """What became of a sent item's retry, followed to its end: the new run's
    status in the cache (every webhook, sync, card or job poll stores it
    there), or, for an item whose send went unanswered, unknown."""

    COMPLETED = "completed", "Completed"
    FAILED_AGAIN = "failed_again", "Failed again"
    STILL_RUNNING = "still_running", "Still running"
    CANCELED = "canceled", "Canceled at Skyvern"
    UNKNOWN = "unknown", "Outcome unknown"


#: A new run that ended in one of these failed again (a person canceling it
#: at Skyvern did not: that run is not offered for another retry).
FAILED_AGAIN_STATUSES = [Status.FAILED, Status.TERMINATED, Status.TIMED_OUT]
#: Items that were sent: Skyvern took the retry, or may have.
SENT_ITEM_STATES = [ItemState.RETRIED, ItemState.UNKNOWN]


class SkipReason(models.TextChoices):
    NOT_TERMINAL = "not_terminal", "Not finished yet (only finished runs can be retried)"
    ALREADY_RETRIED = "already_retried", "Already retried"
    IN_ACTIVE_JOB = "in_active_job", "Already in another active bulk job"
    KEY_FAILING = "key_failing", "Its connection's API key is failing"
    SKYVERN_RETRIES = "skyvern_retries", "Skyvern retries it itself"
    COMPLETED = "completed", "It succeeded (retrying runs it again)"
    RETRIED_MEANWHILE = "retried_meanwhile", "Retried by someone else meanwhile"
    JOB_CANCELED = "job_canceled", "Job canceled"
    WEBHOOK_ONLY = (
        "webhook_only",
        "Only its webhook failed: replay the webhooks instead of redoing the browser work",
    )
    NOT_WEBHOOK_ONLY = "not_webhook_only", "Not a webhook-only failure: nothing to replay"
    FINISHED = "finished", "Already finished: nothing to cancel"
    DONE_MEANWHILE = "done_meanwhile", "Done by someone else meanwhile"


class BulkRetryJobQuerySet(RestrictedQuerySet):
    """Every view starts from `BulkRetryJob.objects.restrict(user)`."""

    team_path = "team"

    def active(self):
        return self.filter(state__in=ACTIVE_JOB_STATES)

    def with_outcome_counts(self):
        """Each job with its items counted per state (`n_<state>`) and what
        became of its sent retries: `n_completed`, `n_failed_again`,
        `n_canceled_at_skyvern`, `n_still_running`; the jobs lists read them."""
        counts = {
            f"n_{state}": models.Count("items", filter=Q(items__state=state))
            for state in ItemState.values
        }
        retried = Q(items__state=ItemState.RETRIED)
        ended = {
            "n_completed": models.Count(
                "items", filter=retried & Q(items__new_run__status=Status.COMPLETED)
            ),
            "n_failed_again": models.Count(
                "items", filter=retried & Q(items__new_run__status__in=FAILED_AGAIN_STATUSES)
            ),
            "n_canceled_at_skyvern": models.Count(
                "items", filter=retried & Q(items__new_run__status=Status.CANCELED)
            ),
        }
        return (
            self.annotate(**counts, **ended)
            .annotate(
                n_still_running=models.F("n_retried")
                - models.F("n_completed")
                - models.F("n_failed_again")
                - models.F("n_canceled_at_skyvern")
            )
        )


class BulkRetryJob(models.Model):
    """One support person's decision to retry a captured set of runs."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="bulk_retry_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField()
    kind = models.CharField(max_length=16, choices=JobKind.choices, default=JobKind.RETRY)
    include_already_retried = models.BooleanField(default=False)
    # Runs behind their workflow's latest version are rerun on it (same
    # parameters) instead of retried as they are (console/runs/reruns.py).
    rerun_on_latest = models.BooleanField(default=False)
    # Sent as `x-max-steps-override` with every retry of the job.
    max_steps_override = models.PositiveIntegerField(null=True, blank=True)
    # The filter or the explicit ids as chosen, for display; the items are the truth.
    selection = models.JSONField(default=dict, blank=True)

    state = models.CharField(max_length=10, choices=JobState.choices, default=JobState.QUEUED)
    state_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    state_changed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0)
    # Last sign of life of a worker on this job: a job that is active with a
    # stale heartbeat and no worker booked is picked up again (`bulk_jobs_revive`).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its retries were followed to their end: sending is over and every
    # new run ended, or the follow's time limit passed (those still running
    # then stay "still running"). Until then the job's end is not announced.
    followed_at = models.DateTimeField(null=True, blank=True)
    # When the person who started it was told it ended (a message on a page view).
    notified_at = models.DateTimeField(null=True, blank=True)

    # The guard against burning credits on retries that fail again. A job
    # sending more runs than `canary_over` first sends its `canary_size`
    # canary items, waits for their outcomes, and goes on only if at least
    # `min_success_percent` of them succeeded; after that the share of its
    # last finished retries keeps being watched (`console.bulk.services.canary`).
    canary_over = models.PositiveIntegerField(null=True, blank=True)
    canary_size = models.PositiveIntegerField(default=0)
    min_success_percent = models.PositiveSmallIntegerField(default=60)
    # When the canary was judged good enough (by its outcomes, or by a person resuming).
    canary_passed_at = models.DateTimeField(null=True, blank=True)
    # After a person resumes a halted job, only retries sent since count.
    watch_since = models.DateTimeField(null=True, blank=True)
    # Why the job paused itself, in words; empty when a person paused it.
    halt_reason = models.CharField(max_length=500, blank=True, default="")

    objects = BulkRetryJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="bulkjob_team_newest"),
            models.Index(fields=["state"], name="bulkjob_state"),
        ]

    def __str__(self):
        return f"{self.title} of {self.total} runs ({self.state})"

    @property
    def title(self) -> str:
        """ "Bulk retry #12", "Bulk cancel #13": how pages name the job."""
        return f"{self.get_kind_display()} #{self.pk}"

    def item_state_label(self, state: str) -> str:
        """An item state in the words of what this kind of job does: a
        replay job's done items are "Webhook replayed", a cancel job's
        failed ones "Not cancelled" (a retry job keeps ItemState's labels)."""
        return KIND_ITEM_LABELS.get(self.kind, {}).get(state) or ItemState(state).label

    @property
    def item_state_choices(self) -> list[tuple[str, str]]:
        """The item states a job of this kind can have, in its words (a job
        that makes no retry never has a "retried" item)."""
        return [
            (value, self.item_state_label(value))
            for value in ItemState.values
            if self.kind == JobKind.RETRY or value != ItemState.RETRIED
        ]

    @property
    def not_done_words(self) -> str:
        """Items Skyvern refused, after their count: "not retried", "not replayed"."""
        return self.item_state_label(ItemState.FAILED).lower()

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES

    @property
    def is_guarded(self) -> bool:
        """Whether this job starts with a canary and halts itself on failures."""
        return self.canary_size > 0

    @property
    def in_canary(self) -> bool:
        return self.is_guarded and self.canary_passed_at is None


class BulkRetryItemQuerySet(RestrictedQuerySet):
    team_path = "job__team"

    def with_outcome(self):
        """Each item with `outcome`: an Outcome value for items that were sent,
        "" for the others (waiting, not retried, skipped)."""
        return self.annotate(
            outcome=Case(
                When(state=ItemState.UNKNOWN, then=Value(Outcome.UNKNOWN.value)),
                When(~Q(state=ItemState.RETRIED), then=Value("")),
                When(new_run__isnull=True, then=Value(Outcome.UNKNOWN.value)),
                When(new_run__status=Status.COMPLETED, then=Value(Outcome.COMPLETED.value)),
                When(
                    new_run__status__in=FAILED_AGAIN_STATUSES,
                    then=Value(Outcome.FAILED_AGAIN.value),
                ),
                When(new_run__status=Status.CANCELED, then=Value(Outcome.CANCELED.value)),
                default=Value(Outcome.STILL_RUNNING.value),
                output_field=models.CharField(),
            )
        )

    def outcome(self, *outcomes: str):
        """The items whose followed outcome is one of `outcomes`."""
        return self.with_outcome().filter(outcome__in=outcomes)


class BulkRetryItem(models.Model):
    """One run of a job and what became of its retry.

    pending → sending → retried | failed | skipped | unknown. `sending` is a
    lease (from `sent_at`): an item still sending after the client's longest
    possible call has lost its worker and becomes unknown, never re-sent.
    """

    job = models.ForeignKey(BulkRetryJob, on_delete=models.CASCADE, related_name="items")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="bulk_retry_items")
    # The run's connection, kept here so the throttle's queries need no join.
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=10, choices=ItemState.choices, default=ItemState.PENDING)
    skip_reason = models.CharField(max_length=20, choices=SkipReason.choices, blank=True)
    # Skyvern's reason (or the console's) in words; never the API key.
    error = models.CharField(max_length=500, blank=True, default="")
    # Counted retries of the run when the job was created: the item sends
    # retry number seen_retries + 1, so a retry made meanwhile is not repeated.
    seen_retries = models.PositiveIntegerField(default=0)
    # Set when the job reruns this run on its workflow's latest version:
    # that version's number when the job was created.
    rerun_version = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    retry = models.ForeignKey(
        Retry, null=True, blank=True, on_delete=models.SET_NULL, related_name="bulk_items"
    )
    # The replay or cancel intent of an item of a job that makes no retry.
    action = models.ForeignKey(
        RunAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="bulk_items"
    )
    new_run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the last "check" of an unknown item found, in words.
    check_note = models.CharField(max_length=500, blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    # One of the runs sent first, whose outcomes decide whether the rest go.
    canary = models.BooleanField(default=False)

    objects = BulkRetryItemQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "run"], name="bulk_item_one_per_run"),
        ]
        indexes = [
            # The worker: the job's due pending items, oldest first.
            models.Index(fields=["job", "state", "next_attempt_at"], name="bulkitem_job_due"),
            # The throttle: items in flight per connection, and stale leases.
            models.Index(fields=["connection", "state", "sent_at"], name="bulkitem_conn_flight"),
            # Progress: items finished in the last minute.
            models.Index(fields=["job", "finished_at"], name="bulkitem_job_finished"),
            # Preview: is this run already in an active job?
            models.Index(
                fields=["run"],
                condition=Q(state__in=["pending", "sending"]),
                name="bulkitem_open_run",
            ),
        ]

    def __str__(self):
        return f"{self.run_id} in bulk retry #{self.job_id} ({self.state})"


class ConnectionThrottle(models.Model):
    """How fast bulk retries may go to one Skyvern connection, and the state
    the throttle shares across every job, worker thread and process.

    Updated only inside a transaction holding this row (SELECT ... FOR UPDATE
    on PostgreSQL; SQLite's IMMEDIATE transactions hold the write lock):
    `next_send_at` spaces sends 1/R apart; `paused_until` holds every send
    back after a 429 / 503 / refused connection. In-flight requests are the
    connection's items in `sending` whose lease has not expired.
    """

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, related_name="bulk_throttle"
    )
    # Overrides of BULK_RETRY_MAX_IN_FLIGHT / BULK_RETRY_PER_SECOND; null = the setting.
    max_in_flight = models.PositiveSmallIntegerField(null=True, blank=True)
    per_second = models.FloatField(null=True, blank=True)
    next_send_at = models.DateTimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True, default="")
    # Skyvern answered 403 to a bulk retry: the key is failing (until a sync succeeds).
    key_rejected_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"bulk throttle of {self.connection}"

    @property
    def effective_max_in_flight(self) -> int:
        return max(1, self.max_in_flight or settings.BULK_RETRY_MAX_IN_FLIGHT)

    @property
    def effective_per_second(self) -> float:
        value = self.per_second or settings.BULK_RETRY_PER_SECOND
        return max(0.01, float(value))
