"""Version drift, and reruns on the workflow's latest version.

A retry at Skyvern re-runs the run's *own* workflow version. When the
workflow was edited since, the person may prefer a rerun: a new run of the
latest version with the run's parameters (`POST /v1/run/agents`). A rerun is
recorded like a retry (a Retry row of kind "rerun", numbered with the run's
retries): the intent before the call, one Skyvern call per intent, an
unknown outcome never re-sent by itself, lineage and the audit log.
"""

import hashlib
import logging
from dataclasses import dataclass

from django.core.cache import cache
from django.utils import timezone

from console.audit.models import Action
from console.skyvern import SkyvernError
from console.teams.access import require
from console.teams.clients import client_for
from console.teams.models import RETRY, Connection
from console.teams.secrets import ApiKeyUnreadable

from .models import KnownWorkflow, Retry, RetryKind, RetryState, Run
from .services import (
    RetryOutcome,
    RetryRefused,
    audit_intent_outcome,
    counted_retries,
    give_up_stale_sends,
    intent_send,
    latest_retry,
    retry_intent_record,
)

log = logging.getLogger(__name__)

# How long a workflow's versions are trusted: a workflow published a moment
# ago shows up on the next page a little later, never a Skyvern call per page.
VERSIONS_KEPT_SECONDS = 60


@dataclass(frozen=True)
class Versions:
    """What Skyvern says of a workflow's versions: the current number, and
    each version's own id ("w_…") to its number."""

    current: int
    numbers: dict
    #: Inputs of the current version without a default.
    required: tuple = ()


@dataclass(frozen=True)
class Drift:
    """Which version a run ran and which one is current; either may be unknown."""

    run_version: int | None
    current_version: int | None

    @property
    def behind(self) -> bool:
        return (
            self.run_version is not None
            and self.current_version is not None
            and self.run_version < self.current_version
        )

    @property
    def sentence(self) -> str:
        if self.behind:
            return (
                f"Retries version {self.run_version} (this run's); "
                f"the workflow is now at version {self.current_version}."
            )
        if self.run_version is not None and self.current_version is not None:
            return f"Retries version {self.run_version}, the workflow's latest."
        return "Workflow version unknown: Skyvern couldn't be asked just now."


def workflow_versions(connection, workflow_permanent_id: str) -> Versions | None:
    """The workflow's versions as Skyvern has them, kept for a short while
    per connection; None when they can't be known (Skyvern unreachable, the
    workflow gone). Never raises for Skyvern's sake: drift is advice."""
    if not workflow_permanent_id:
        return None
    digest = hashlib.blake2b(workflow_permanent_id.encode(), digest_size=12).hexdigest()
    key = f"workflow-versions:{connection.pk}:{digest}"
    kept = cache.get(key)
    if kept is not None:
        return kept or None  # False: unknown, remembered as briefly
    try:
        found = client_for(connection).workflow_versions(workflow_permanent_id)
    except (SkyvernError, ApiKeyUnreadable) as error:
        log.info("versions of %s unknown: %s", workflow_permanent_id, type(error).__name__)
        cache.set(key, False, VERSIONS_KEPT_SECONDS)
        return None
    if not found:
        cache.set(key, False, VERSIONS_KEPT_SECONDS)
        return None
    current = found[-1]
    versions = Versions(
        current=current.version,
        numbers={w.workflow_id: w.version for w in found},
        required=tuple(p.key for p in current.parameters if not p.has_default),
    )
    cache.set(key, versions, VERSIONS_KEPT_SECONDS)
    known_workflow_store(connection, workflow_permanent_id, found)
    return versions


def known_workflow_store(connection, workflow_permanent_id: str, found) -> None:
    """Keep what Skyvern said of the workflow's versions (oldest first) for
    the run cards: each version's number and Skyvern's attempts of a run of
    it, and the current number."""
    KnownWorkflow.objects.update_or_create(
        connection=connection,
        workflow_permanent_id=workflow_permanent_id,
        defaults={
            "current_version": found[-1].version,
            "versions": {w.workflow_id: [w.version, w.max_attempts] for w in found},
            "fetched_at": timezone.now(),
        },
    )


def run_version(run: Run, versions: Versions | None) -> int | None:
    """The version number the run ran, from what Skyvern listed of it: its
    number, else its version id looked up among the workflow's versions."""
    if run.workflow_version:
        return run.workflow_version
    if versions is not None and run.workflow_version_id:
        return versions.numbers.get(run.workflow_version_id)
    return None


def run_drift(run: Run) -> Drift:
    """How the run's workflow version stands against the current one."""
    versions = workflow_versions(run.connection, run.workflow_permanent_id)
    return Drift(
        run_version=run_version(run, versions),
        current_version=versions.current if versions else None,
    )


def runs_behind(runs) -> dict[int, int]:
    """Of `runs` (a Run queryset), those behind their workflow's latest
    version: run pk -> the latest version. Skyvern is asked once per
    connection and workflow (kept a short while); a workflow whose versions
    can't be known counts as not behind."""
    rows = runs.order_by().values_list(
        "pk", "connection_id", "workflow_permanent_id", "workflow_version", "workflow_version_id"
    )
    connections: dict[int, Connection] = {}
    behind = {}
    for pk, connection_id, wpid, number, version_id in rows.iterator(chunk_size=2000):
        if not wpid:
            continue
        if connection_id not in connections:
            connections[connection_id] = Connection.objects.get(pk=connection_id)
        versions = workflow_versions(connections[connection_id], wpid)
        if versions is None:
            continue
        ran = number or versions.numbers.get(version_id)
        if ran is not None and ran < versions.current:
            behind[pk] = versions.current
    return behind


def rerun_intent_send(*, retry: Retry, user) -> SkyvernError | None:
    """Send a recorded rerun (a bulk job's): the run's parameters and webhook
    URL are read from Skyvern, then the latest version is run with them, once.
    When the read fails nothing was sent: the rerun is recorded 'failed' and
    the error returned, as for a refused retry."""
    run = retry.run
    try:
        detail = client_for(run.connection).get_run(run.run_id)
    except (SkyvernError, ApiKeyUnreadable) as error:
        if not isinstance(error, SkyvernError):
            error = SkyvernError(str(error))
        message = f"Couldn't read the run's parameters from Skyvern: {error}"
        Retry.objects.filter(pk=retry.pk).update(
            state=RetryState.FAILED, error=message[:500], finished_at=timezone.now()
        )
        retry.refresh_from_db()
        if error.run_may_exist:  # a read made nothing: nothing may exist
            return SkyvernError(message)
        return error
    return _rerun_send(
        retry=retry, user=user, parameters=detail.parameters, webhook_url=detail.webhook_url
    )


def run_rerun(
    *, run: Run, user, seen_retries: int, confirm_again: bool = False, request=None
) -> RetryOutcome:
    """Rerun a finished run on its workflow's latest version, at most once per intent.

    Only a run behind its workflow is rerun (otherwise a retry does the
    same). Its parameters and webhook URL are read from Skyvern first (a
    read: nothing is recorded if that fails). Then, as for a retry, the
    intent is recorded before Skyvern is called, numbered with the run's
    retries, so a double-click or a colleague's click makes one call; an
    answer lost on the way is kept 'unknown' and never re-sent by itself.
    The new run is stored with its lineage, and the rerun is audited once
    (run_rerun or run_rerun_failed). Needs the operator role.
    """
    require(user, RETRY, run)
    if not run.is_terminal:
        raise RetryRefused(f"This run {run.not_finished_because}; only finished runs can be rerun.")
    drift = run_drift(run)
    if not drift.behind:
        raise RetryRefused(
            "This run isn't behind its workflow's latest version (or the version "
            "can't be known now): retry it instead."
        )
    give_up_stale_sends(run)
    already = counted_retries(run).count()
    if seen_retries != already:
        return RetryOutcome(run=run, retry=latest_retry(run), sent=False)
    if already and not confirm_again:
        raise RetryRefused("This run was already retried. Confirm to rerun it.")
    client = client_for(run.connection)
    try:
        detail = client.get_run(run.run_id)
    except (SkyvernError, ApiKeyUnreadable) as error:
        raise RetryRefused(
            f"Couldn't read the run's parameters from Skyvern ({error}). Nothing was sent."
        ) from error
    versions = workflow_versions(run.connection, run.workflow_permanent_id)
    required = versions.required if versions else ()
    missing = [key for key in required if key not in detail.parameters]
    if missing:
        raise RetryRefused(
            f"Version {drift.current_version} needs {', '.join(missing)}, which this run "
            "wasn't given: it can't be rerun with the same parameters. Nothing was sent."
        )

    retry = retry_intent_record(
        run=run,
        number=already + 1,
        user=user,
        kind=RetryKind.RERUN,
        version=drift.current_version,
    )
    if retry is None:
        return RetryOutcome(run=run, retry=latest_retry(run), sent=False)
    error = _rerun_send(
        retry=retry, user=user, parameters=detail.parameters, webhook_url=detail.webhook_url
    )
    audit_intent_outcome(
        run=run,
        intent=retry,
        error=error,
        done=Action.RUN_RERUN,
        failed=Action.RUN_RERUN_FAILED,
        details={"from_version": drift.run_version, "to_version": drift.current_version},
        done_details={"new_run": retry.new_run.run_id if retry.new_run else ""},
        user=user,
        request=request,
    )
    return RetryOutcome(run=run, retry=retry, sent=True, error=error)


def _rerun_send(*, retry: Retry, user, parameters: dict, webhook_url) -> SkyvernError | None:
    """Send a recorded rerun once; record what came of it (see retry_intent_send)."""
    return intent_send(
        retry=retry,
        user=user,
        send=lambda client, run: client.run_workflow(
            run.workflow_permanent_id, parameters=parameters, webhook_url=webhook_url or None
        ),
        what="rerun",
        did="reran",
    )
