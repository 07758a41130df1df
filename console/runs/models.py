from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from console.skyvern import TERMINAL_STATUSES
from console.teams.models import Connection, RestrictedQuerySet, Team


class WriteLock(models.Model):
    """The right to write one connection's cached runs (console/runs/store.py).

    One row per connection, made with the connection. Every writer of
    Skyvern's view of the connection's runs locks it (select_for_update)
    before it reads or writes any run row, so two writers never interleave
    and never deadlock. It holds nothing else.
    """

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, primary_key=True, related_name="write_lock"
    )

    def __str__(self):
        return f"runs lock of {self.connection_id}"


class Status(models.TextChoices):
    CREATED = "created", "Created"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TERMINATED = "terminated", "Terminated"
    CANCELED = "canceled", "Canceled"
    TIMED_OUT = "timed_out", "Timed out"


class RunQuerySet(RestrictedQuerySet):
    """Every view starts from `Run.objects.restrict(user)`."""

    team_path = "team"

    def search(self, text: str):
        """Runs whose id, workflow id or workflow title contain `text`.

        Served by an index on both databases: pg_trgm on PostgreSQL, an FTS5
        trigram table on SQLite (see migration 0002). Terms shorter than three
        characters cannot use a trigram index and fall back to a scan.
        """
        from .search import search_filter

        return self.filter(search_filter(self.db, text))


def search_text_for(run_id: str, workflow_permanent_id: str | None, title: str | None) -> str:
    return " ".join(part for part in (run_id, workflow_permanent_id, title) if part).lower()


class Run(models.Model):
    """The console's copy of one Skyvern workflow run, plus what Skyvern
    doesn't know: which run this one retried, who asked and when."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="runs")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="runs")
    run_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=Status.choices)
    workflow_permanent_id = models.CharField(max_length=128, blank=True, default="")
    workflow_title = models.CharField(max_length=300, blank=True, default="")
    failure_reason = models.TextField(blank=True, default="")
    # Which version of its workflow the run ran, as Skyvern lists it: the
    # version's own id ("w_…") and its number where Skyvern sends it. Kept
    # apart from `raw`, which a run's full view (without them) replaces.
    workflow_version_id = models.CharField(max_length=128, blank=True, default="")
    workflow_version = models.PositiveIntegerField(null=True, blank=True)
    # Skyvern's most confident failure category, and for a failed, terminated
    # or timed-out run its failure group (category × normalised reason ×
    # workflow) and the normalised reason shown for the group; written with
    # the run (console/runs/store.py, console/runs/failures.py).
    failure_category = models.CharField(max_length=40, blank=True, default="")
    failure_group = models.CharField(max_length=16, blank=True, default="")
    failure_reason_normalised = models.CharField(max_length=500, blank=True, default="")
    # Set when the run failed only because its webhook couldn't be delivered
    # (the automation itself succeeded, its output intact).
    webhook_failure_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    modified_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    app_url = models.URLField(max_length=500, blank=True, default="")
    recording_url = models.URLField(max_length=2000, blank=True, default="")
    screenshot_urls = models.JSONField(default=list, blank=True)
    output = models.JSONField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    # What a retry decision needs, kept from whichever view of the run said it
    # last (a listing row, a full view, a webhook): Skyvern's own retries of
    # the run (its current attempt, every attempt, whether another is
    # scheduled and when), and what a retry would copy (the webhook URL, the
    # browser session) or cost (credits; only list rows report them).
    attempt = models.PositiveIntegerField(default=1)
    attempts = models.JSONField(default=list, blank=True)
    retry_pending = models.BooleanField(default=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    webhook_url = models.CharField(max_length=2000, blank=True, default="")
    browser_session_id = models.CharField(max_length=128, blank=True, default="")
    credits_used = models.PositiveIntegerField(null=True, blank=True)
    # Lowercased id + workflow id + title, kept for the indexed substring search.
    search_text = models.TextField(editable=False, default="")
    synced_at = models.DateTimeField(default=timezone.now)

    retried_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    retried_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retried_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "run_id"], name="run_id_unique_per_connection"
            ),
        ]
        indexes = [
            # Newest first within a team, with and without a status filter;
            # the id breaks ties so that keyset pagination is exact.
            models.Index(fields=["team", "-created_at", "-id"], name="run_team_newest"),
            models.Index(
                fields=["team", "status", "-created_at", "-id"], name="run_team_status_newest"
            ),
            models.Index(fields=["team", "run_id"], name="run_team_run_id"),
            # A search's capped count reads this index alone, not the rows: for a
            # common term (one run in 15) 15,000 rows per 1,000 matches otherwise.
            models.Index(fields=["team", "status", "search_text"], name="run_team_status_search"),
            # The runs page's workflow filter, newest first; also how the
            # team's workflows are listed, one seek each (listing.team_workflows).
            models.Index(
                fields=["team", "workflow_permanent_id", "-created_at", "-id"],
                name="run_team_workflow_newest",
            ),
            # The failure inbox counts a team's groups from this index alone
            # (failed runs only), and the runs page filters by group with it.
            models.Index(
                fields=["team", "failure_group", "-created_at", "-id"],
                name="run_team_failure_group",
                condition=~Q(failure_group=""),
            ),
            models.Index(
                fields=["team", "failure_category", "-created_at", "-id"],
                name="run_team_failure_category",
            ),
            # "Finished in the last hour", with and without a status: the few
            # runs of the range are found here, then put newest first.
            models.Index(fields=["team", "finished_at"], name="run_team_finished"),
            models.Index(fields=["team", "status", "finished_at"], name="run_team_status_finished"),
        ]

    def __str__(self):
        return self.run_id

    def save(self, *args, **kwargs):
        self.search_text = search_text_for(
            self.run_id, self.workflow_permanent_id, self.workflow_title
        )
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "search_text"}
        super().save(*args, **kwargs)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def webhook_only_failure(self) -> bool:
        """Only the webhook failed: replaying it, not retrying, is the fix."""
        return self.status == Status.FAILED and bool(self.webhook_failure_reason)

    @property
    def not_finished_because(self) -> str:
        """Why an unfinished run can't be retried yet, as the end of a sentence."""
        return NOT_FINISHED_BECAUSE.get(self.status, f"is {self.get_status_display().lower()}")

    @property
    def skyvern_retries(self) -> bool:
        """Skyvern's own retry policy will try this run again by itself."""
        return skyvern_retries(self.retry_pending, self.next_attempt_at)


def skyvern_retries(retry_pending: bool, next_attempt_at, now=None) -> bool:
    """Is Skyvern going to retry the run itself: it says a retry is pending,
    or names a next attempt still to come. A retry from the console then
    makes a second run beside Skyvern's own."""
    if retry_pending:
        return True
    return next_attempt_at is not None and next_attempt_at > (now or timezone.now())


NOT_FINISHED_BECAUSE = {
    Status.CREATED: "hasn't started yet",
    Status.QUEUED: "is still queued",
    Status.RUNNING: "is still running",
    Status.PAUSED: "is paused",
}


class RetryState(models.TextChoices):
    SENDING = "sending", "Sending to Skyvern"
    RETRIED = "retried", "Retried"
    FAILED = "failed", "Not retried"
    UNKNOWN = "unknown", "Outcome unknown"


class RetryKind(models.TextChoices):
    # Skyvern's retry: the run's own workflow version again.
    RETRY = "retry", "Retry"
    # A new run of the workflow's latest version with the run's parameters.
    RERUN = "rerun", "Rerun on the latest version"


# The states in which a retry counts: it happened, is happening, or may have.
COUNTED_RETRY_STATES = [RetryState.SENDING, RetryState.RETRIED, RetryState.UNKNOWN]


class RetryQuerySet(RestrictedQuerySet):
    team_path = "run__team"


class Retry(models.Model):
    """One person's intent to retry a run, recorded before Skyvern is called.

    `number` is which retry of the run this is (1 for the first). The partial
    unique constraint lets only one intent per number exist unless it failed
    for certain, so a double-click or two people clicking at once produce one
    Skyvern call: the second insert fails and is shown the first one instead.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="retry_attempts")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=RetryState.choices, default=RetryState.SENDING)
    # A rerun shares the numbering (and the one-intent gate) with retries;
    # `version` is the workflow version it asked for (the latest when sent).
    kind = models.CharField(max_length=8, choices=RetryKind.choices, default=RetryKind.RETRY)
    version = models.PositiveIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    new_run = models.OneToOneField(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="created_by_retry"
    )
    error = models.CharField(max_length=500, blank=True, default="")
    # An unknown retry: the runs at Skyvern that may be its new run (ids,
    # space-separated; proposed by the sync or the last check), and what the
    # last check found (console/runs/checking.py).
    proposed_runs = models.CharField(max_length=300, blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    check_note = models.CharField(max_length=500, blank=True, default="")
    check_evidence = models.JSONField(default=list, blank=True)

    objects = RetryQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "number"],
                condition=Q(state__in=COUNTED_RETRY_STATES),
                name="one_retry_per_intent",
            ),
        ]

    def __str__(self):
        return f"retry #{self.number} of {self.run.run_id} ({self.state})"


class ActionKind(models.TextChoices):
    REPLAY_WEBHOOK = "replay_webhook", "Webhook replay"
    CANCEL = "cancel", "Cancel"


class ActionState(models.TextChoices):
    SENDING = "sending", "Sending to Skyvern"
    DONE = "done", "Done"
    FAILED = "failed", "Not done"
    UNKNOWN = "unknown", "Outcome unknown"


# The states in which an action counts: it happened, is happening, or may have.
COUNTED_ACTION_STATES = [ActionState.SENDING, ActionState.DONE, ActionState.UNKNOWN]


class RunActionQuerySet(RestrictedQuerySet):
    team_path = "run__team"


class RunAction(models.Model):
    """One person's intent to replay a run's webhook or cancel a run,
    recorded before Skyvern is called (as a Retry is).

    `number` is which action of that kind on the run this is; the partial
    unique constraint lets one intent per number count, so a double-click or
    two people at once make one Skyvern call. A replay keeps what the
    receiver answered, as Skyvern reported it.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=16, choices=ActionKind.choices)
    number = models.PositiveIntegerField()
    state = models.CharField(
        max_length=10, choices=ActionState.choices, default=ActionState.SENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A replay to another URL than the run's own (an admin's choice).
    webhook_url = models.URLField(max_length=2000, blank=True, default="")
    # The receiver's answer to a replay, as Skyvern reported it.
    target_url = models.CharField(max_length=2000, blank=True, default="")
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")

    objects = RunActionQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "number"],
                condition=Q(state__in=COUNTED_ACTION_STATES),
                name="one_run_action_per_intent",
            ),
        ]

    def __str__(self):
        return f"{self.kind} #{self.number} of {self.run.run_id} ({self.state})"


class FailureGroupCount(models.Model):
    """How many of a team's runs are in one failure group, and when they were
    first and last seen (created): the failure inbox reads these rows instead
    of counting the runs. Kept by the database itself on every write of a run
    (triggers, migration runs/0010), so no writer can forget it; rebuilt for
    a team by `manage.py rebuild_failure_counts` (console/runs/failure_counts.py)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    failure_group = models.CharField(max_length=16)
    # What the group is: the same for all its runs but the workflow's title
    # (that of the group's run written last).
    failure_category = models.CharField(max_length=40, blank=True, default="")
    failure_reason_normalised = models.CharField(max_length=500, blank=True, default="")
    workflow_permanent_id = models.CharField(max_length=128, blank=True, default="")
    workflow_title = models.CharField(max_length=300, blank=True, default="")
    count = models.IntegerField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "failure_group"], name="failure_count_unique_per_group"
            ),
        ]
        indexes = [
            models.Index(fields=["team", "-last_seen"], name="failure_count_last_seen"),
        ]

    def __str__(self):
        return f"{self.failure_group}: {self.count}"


class RunStatusCount(models.Model):
    """How many of a team's runs have one status: the runs page's counts per
    status and its total, read instead of counting the runs. Kept by the
    database on every write of a run, like FailureGroupCount (triggers,
    migration runs/0014); rebuilt by `manage.py rebuild_failure_counts`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16)
    count = models.IntegerField()

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "status"], name="status_count_unique"),
        ]

    def __str__(self):
        return f"{self.status}: {self.count}"


class FailureHourCount(models.Model):
    """How many of a team's runs in one failure group were created in one
    hour (UTC): the inbox's histograms. Kept like FailureGroupCount."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    failure_group = models.CharField(max_length=16)
    count = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "hour", "failure_group"], name="failure_hour_unique"
            ),
        ]

    def __str__(self):
        return f"{self.failure_group} at {self.hour}: {self.count}"


class KnownWorkflowQuerySet(RestrictedQuerySet):
    team_path = "connection__team"

    def of_workflows(self, wanted) -> dict[tuple[int, str], "KnownWorkflow"]:
        """What is known of each (connection id, workflow permanent id) of
        `wanted`, read in one query whatever their number."""
        wanted = set(wanted)
        if not wanted:
            return {}
        found = self.filter(
            connection_id__in={c for c, _ in wanted},
            workflow_permanent_id__in={w for _, w in wanted},
        )
        return {
            (k.connection_id, k.workflow_permanent_id): k
            for k in found
            if (k.connection_id, k.workflow_permanent_id) in wanted
        }


class KnownWorkflow(models.Model):
    """What Skyvern last said of a workflow's versions, whenever the console
    asked (the drift check, a bulk preview, the sync): kept so that a run's
    card can say "attempt 2 of 3" and "the workflow is now at version 5"
    without asking Skyvern while it is drawn."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="known_workflows"
    )
    workflow_permanent_id = models.CharField(max_length=128)
    current_version = models.PositiveIntegerField()
    #: Each version's own id ("w_…") -> [its number, attempts Skyvern makes
    #: of a run of it (retry_policy.max_retries + 1), or None without a policy].
    versions = models.JSONField(default=dict)
    fetched_at = models.DateTimeField(default=timezone.now)

    objects = KnownWorkflowQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "workflow_permanent_id"], name="known_workflow_unique"
            ),
        ]

    def __str__(self):
        return f"{self.workflow_permanent_id} v{self.current_version}"

    def version_of(self, number, version_id) -> int | None:
        """The version a run ran: its own number, else its version id's."""
        if number:
            return number
        found = self.versions.get(version_id or "")
        return found[0] if found else None

    def max_attempts(self, number, version_id) -> int | None:
        """Attempts Skyvern makes of a run of that version: its own policy's,
        else (the version unknown here) the current version's."""
        by_number = {entry[0]: entry[1] for entry in self.versions.values()}
        found = self.versions.get(version_id or "")
        if found:
            return found[1]
        if number and number in by_number:
            return by_number[number]
        return by_number.get(self.current_version)
