"""Which workers are alive, and how much work waits for them: what health
checks, metrics and `manage.py doctor` read about the background side.

Every `manage.py db_worker` (not `--batch`) beats from its keeper thread,
at least every 30 s (`keeper.check_every`); a worker not seen for a few of
those is gone. Rows of workers gone for a day are dropped as others beat.
"""

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from .models import WorkerBeat
from .queue import RUNNING, WAITING

FORGET_AFTER = timedelta(days=1)


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def worker_beat(worker: str | None = None) -> None:
    """Record that this worker is alive now."""
    now = timezone.now()
    worker = worker or this_worker()
    updated = WorkerBeat.objects.filter(worker=worker).update(seen_at=now)
    if not updated:
        WorkerBeat.objects.update_or_create(
            worker=worker,
            defaults={"seen_at": now},
            create_defaults={"started_at": now, "seen_at": now},
        )
        WorkerBeat.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()


def worker_gone(worker: str | None = None) -> None:
    """This worker stopped on purpose: no longer count it as alive."""
    WorkerBeat.objects.filter(worker=worker or this_worker()).delete()


def worker_last_seen() -> datetime | None:
    """When any worker last showed a sign of life (None: never)."""
    return WorkerBeat.objects.aggregate(last=Max("seen_at"))["last"]


def workers_seen_since(since: datetime) -> int:
    return WorkerBeat.objects.filter(seen_at__gte=since).count()


@dataclass(frozen=True)
class QueueDepth:
    due: int  # waiting, and may start now: the backlog
    scheduled: int  # waiting for a later start (the next sync round, a re-send)
    running: int


def queue_depth() -> QueueDepth:
    """Tasks waiting and running right now, over every queue."""
    now = timezone.now()
    # django-tasks-db stores "start at once" as its far-future date.
    due_now = Q(run_after__lte=now) | Q(run_after=get_date_max())
    counts = DBTaskResult.objects.filter(status__in=[WAITING, RUNNING]).aggregate(
        due=Count("pk", filter=Q(status=WAITING) & due_now),
        waiting=Count("pk", filter=Q(status=WAITING)),
        running=Count("pk", filter=Q(status=RUNNING)),
    )
    return QueueDepth(
        due=counts["due"], scheduled=counts["waiting"] - counts["due"], running=counts["running"]
    )
