"""Task chains: background tasks that book their own next round, exactly once.

A chain is a task whose every round ends by booking the next one
(`Chain.book_next`, in its `finally`): the periodic sync, the bulk retry
watchdog. Guarantees:
- never two chains: a round is booked only under the chain's row lock
  (`select_for_update`; on SQLite every transaction takes the write lock
  first), after looking for a waiting round, so any number of bookers at once
  (two workers starting, a round ending while a worker checks) book one;
- a killed worker doesn't end the chain: its round stays RUNNING forever and
  its `finally` never runs, so every `manage.py db_worker` calls
  `Chain.ensure` on every chain at start and every few seconds
  (`console.background.keeper`). A running round that has shown no sign of
  life (its start, `Chain.beat`) for longer than the chain's limit is
  recorded as failed (`RoundLost`) and the next round is booked at once. A
  slow round taken for dead by mistake does no harm: it finishes, and its
  `finally` finds the next round already booked.

These guard the chain, not the work: what a round does must tolerate a
second round running beside it (the sync's per-connection lease does).
"""

import logging
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import TaskChain
from .queue import FAILED, RUNNING, WAITING, TaskSlot, task_results

log = logging.getLogger(__name__)

#: Every chain declared, in the order their modules were imported: what the keeper keeps.
CHAINS: list["Chain"] = []


class RoundLost(Exception):
    """Recorded on a round whose worker stopped without finishing it."""


class Chain(TaskSlot):
    """A task that books its own next round `every` after the last one,
    while `needed()`. A round whose sign of life is older than `stale_after`
    has lost its worker. Bind the task with `@CHAIN.bind` over `@task`; the
    task beats (`beat`) while it works and ends with `book_next()`.
    `every` and `stale_after` are read when used (settings may change them).
    """

    def __init__(
        self,
        name: str,
        *,
        every: Callable[[], timedelta],
        stale_after: Callable[[], timedelta],
        needed: Callable[[], bool] = lambda: True,
    ):
        super().__init__(name)
        self.every = every
        self.stale_after = stale_after
        self.needed = needed
        CHAINS.append(self)

    def _rounds(self):
        return task_results(self)

    def _lock(self) -> TaskChain:
        """The chain's row, locked until the end of the transaction."""
        chain, _ = TaskChain.objects.get_or_create(task_path=self.task.module_path)
        return TaskChain.objects.select_for_update().get(pk=chain.pk)

    def _going(self, beat_at, cutoff) -> str | None:
        """Whether the chain goes on by itself: "waiting", "running" or None."""
        rounds = self._rounds()
        if rounds.filter(status=WAITING).exists():
            return "waiting"
        running = rounds.filter(status=RUNNING)
        if beat_at is not None and beat_at > cutoff and running.exists():
            return "running"
        if running.filter(started_at__gt=cutoff).exists():
            return "running"
        return None

    def book(self, *, delay: timedelta = timedelta(0)) -> bool:
        """Book the chain's next round to start in `delay`, unless one is
        already waiting. True when this call booked it; of any number of
        callers at once, one does."""
        with transaction.atomic():
            self._lock()
            if self._rounds().filter(status=WAITING).exists():
                return False
            self.task.using(run_after=timezone.now() + delay).enqueue()
        return True

    def book_next(self) -> bool:
        """What a round does last: book the next one `every` from now, while
        the chain is needed."""
        return self.needed() and self.book(delay=self.every())

    def book_on_commit(self) -> None:
        """Start the chain (its next round `every` from now) once the current
        transaction commits, unless a round is already waiting."""
        transaction.on_commit(lambda: self.book(delay=self.every()))

    def beat(self) -> None:
        """The running round is alive (call it at least every `stale_after`)."""
        TaskChain.objects.filter(task_path=self.task.module_path).update(beat_at=timezone.now())

    def ensure(self) -> str:
        """Make sure the chain goes on while it is needed: a round waiting, or
        one running that has shown a sign of life within `stale_after`.
        Otherwise book a round now, recording the running ones (their worker
        died) as failed with RoundLost.

        Returns "idle" (not needed), "waiting" or "running" (nothing to do),
        "booked" (there was no round at all: the chain had never started) or
        "revived" (a dead round was replaced).
        """
        if not self.needed():
            return "idle"
        stale_after = self.stale_after()
        beat_at = TaskChain.objects.filter(task_path=self.task.module_path).values_list(
            "beat_at", flat=True
        )
        # A look without the lock first: every worker does this every few seconds.
        found = self._going(next(iter(beat_at), None), timezone.now() - stale_after)
        if found:
            return found
        with transaction.atomic():
            chain = self._lock()
            now = timezone.now()
            found = self._going(chain.beat_at, now - stale_after)
            if found:
                return found
            lost = self._rounds().filter(status=RUNNING)
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
            self.task.enqueue()
            if not lost_ids:
                log.info("%s: no round waiting or running; booked one", self.task.name)
                return "booked"
            chain.revived_at = now
            chain.revivals += 1
            chain.save(update_fields=["revived_at", "revivals"])
        lost_list = ", ".join(map(str, lost_ids))
        log.warning(
            "%s: round(s) %s lost with their worker; booked the next", self.task.name, lost_list
        )
        return "revived"


def chains_keep() -> dict[str, str]:
    """One look at every chain, booking what is missing; what each one was."""
    return {chain.name: chain.ensure() for chain in CHAINS}
