"""Task chains: background tasks that book their own next round, exactly once.

A chain is a task whose every round ends by booking the next one
(`chain_book`, in its `finally`): the periodic sync, the bulk retry watchdog.
Guarantees:
- never two chains: a round is booked only under the chain's row lock
  (`select_for_update`; on SQLite every transaction takes the write lock
  first), after looking for a waiting round, so any number of bookers at once
  (two workers starting, a round ending while a worker checks) book one;
- a killed worker doesn't end the chain: its round stays RUNNING forever and
  its `finally` never runs, so every `manage.py db_worker` calls
  `chain_ensure` at start and every few seconds (`console.worker.keeper`).
  A running round that has shown no sign of life (its start, `chain_beat`)
  for longer than the chain's limit is recorded as failed (`RoundLost`) and
  the next round is booked at once. A slow round taken for dead by mistake
  does no harm: it finishes, and its `finally` finds the next round already
  booked.

These functions guard the chain, not the work: what a round does must
tolerate a second round running beside it (the sync's per-connection lease
does).
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.tasks import Task
from django.utils import timezone

from .models import TaskChain

log = logging.getLogger(__name__)

WAITING, RUNNING, FAILED = "READY", "RUNNING", "FAILED"


class RoundLost(Exception):
    """Recorded on a round whose worker stopped without finishing it."""


def _rounds(task: Task):
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(task_path=task.module_path)


def _lock(task: Task) -> TaskChain:
    """The chain's row, locked until the end of the transaction."""
    chain, _ = TaskChain.objects.get_or_create(task_path=task.module_path)
    return TaskChain.objects.select_for_update().get(pk=chain.pk)


def _going(task: Task, beat_at, cutoff) -> str | None:
    """Whether the chain goes on by itself: "waiting", "running" or None."""
    rounds = _rounds(task)
    if rounds.filter(status=WAITING).exists():
        return "waiting"
    running = rounds.filter(status=RUNNING)
    if beat_at is not None and beat_at > cutoff and running.exists():
        return "running"
    if running.filter(started_at__gt=cutoff).exists():
        return "running"
    return None


def chain_book(task: Task, *, delay: timedelta = timedelta(0)) -> bool:
    """Book the chain's next round to start in `delay`, unless one is already
    waiting. True when this call booked it; of any number of callers at once,
    one does."""
    with transaction.atomic():
        _lock(task)
        if _rounds(task).filter(status=WAITING).exists():
            return False
        task.using(run_after=timezone.now() + delay).enqueue()
    return True


def chain_beat(task: Task) -> None:
    """The running round is alive (call it at least every `stale_after`)."""
    TaskChain.objects.filter(task_path=task.module_path).update(beat_at=timezone.now())


def chain_ensure(task: Task, *, stale_after: timedelta) -> str:
    """Make sure the chain goes on: a round waiting, or one running that has
    shown a sign of life within `stale_after`. Otherwise book a round now,
    recording the running ones (their worker died) as failed with RoundLost.

    Returns "waiting" or "running" (nothing to do), "booked" (there was no
    round at all: the chain had never started) or "revived" (a dead round was
    replaced).
    """
    beat_at = TaskChain.objects.filter(task_path=task.module_path).values_list("beat_at", flat=True)
    # A look without the lock first: every worker does this every few seconds.
    found = _going(task, next(iter(beat_at), None), timezone.now() - stale_after)
    if found:
        return found
    with transaction.atomic():
        chain = _lock(task)
        now = timezone.now()
        found = _going(task, chain.beat_at, now - stale_after)
        if found:
            return found
        lost = _rounds(task).filter(status=RUNNING)
        lost_ids = list(lost.values_list("pk", flat=True))
        lost.update(
            status=FAILED,
            finished_at=now,
            exception_class_path=f"{RoundLost.__module__}.{RoundLost.__qualname__}",
            traceback=(
                f"RoundLost: no sign of life for {stale_after.total_seconds():.0f} s; "
                "its worker was stopped without finishing it (killed?). "
                "The next round was booked."
            ),
        )
        task.enqueue()
        if not lost_ids:
            log.info("%s: no round waiting or running; booked one", task.name)
            return "booked"
        chain.revived_at = now
        chain.revivals += 1
        chain.save(update_fields=["revived_at", "revivals"])
    lost_list = ", ".join(map(str, lost_ids))
    log.warning("%s: round(s) %s lost with their worker; booked the next", task.name, lost_list)
    return "revived"
