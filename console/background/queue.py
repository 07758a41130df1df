"""Booking background tasks: on commit, once, and by a slot.

Guarantees:
- `enqueue_on_commit`: nothing is booked for work whose transaction rolls
  back, and a worker never starts on rows it can't see yet;
- `enqueue_once`: no pile of identical waiting tasks (a task with the same
  arguments already waiting, to start no later, is enough). A best effort,
  not a lock: the work itself must tolerate a second task beside it (a bulk
  job's claims do; a chain books under its own lock, `chains`).
"""

from datetime import datetime

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import Task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

WAITING, RUNNING, FAILED = "READY", "RUNNING", "FAILED"


class TaskSlot:
    """A task, named where it is booked and bound where it is defined.

    A service books work through a slot declared beside it; its app's
    `tasks.py` binds the task that does the work (`@SLOT.bind` over `@task`),
    so that services never import their tasks. Every `tasks.py` is imported
    at start-up (`BackgroundConfig.ready`).
    """

    def __init__(self, name: str):
        self.name = name
        self._task: Task | None = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"

    def bind(self, task: Task) -> Task:
        if self._task is not None and self._task.module_path != task.module_path:
            raise ImproperlyConfigured(f"{self.name} is already bound to {self._task.module_path}.")
        self._task = task
        return task

    @property
    def task(self) -> Task:
        if self._task is None:
            raise ImproperlyConfigured(
                f"No task is bound to {self.name}: is its app's tasks.py imported?"
            )
        return self._task


def _task(task: Task | TaskSlot) -> Task:
    return task.task if isinstance(task, TaskSlot) else task


def task_results(task: Task | TaskSlot):
    """Every recorded run of the task, waiting, running or done."""
    return DBTaskResult.objects.filter(task_path=_task(task).module_path)


def waiting_args(task: Task | TaskSlot) -> list[list]:
    """The positional arguments of each booking of the task not yet started."""
    rows = task_results(task).filter(status=WAITING).values_list("args_kwargs", flat=True)
    return [row.get("args") or [] for row in rows if isinstance(row, dict)]


def enqueue_once(task: Task | TaskSlot, *args, run_after: datetime | None = None) -> bool:
    """Book the task with these arguments (at `run_after`), unless one is
    already waiting that starts no later. True when one was booked."""
    task = _task(task)
    with transaction.atomic():
        due = run_after or timezone.now()
        booked = task_results(task).filter(status=WAITING).values_list("args_kwargs", "run_after")
        for args_kwargs, at in booked:
            same = isinstance(args_kwargs, dict) and args_kwargs.get("args") == list(args)
            # django-tasks-db stores "no run_after" (start at once) as its far-future date.
            if same and (at is None or at == get_date_max() or at <= due):
                return False
        if run_after is not None and run_after > timezone.now():
            task = task.using(run_after=run_after)
        task.enqueue(*args)
    return True


def enqueue_on_commit(task: Task | TaskSlot, *args, once: bool = False) -> None:
    """Book the task when the current transaction commits (at once outside
    one); with `once`, unless the same is already waiting (`enqueue_once`)."""

    def book():
        if once:
            enqueue_once(task, *args)
        else:
            _task(task).enqueue(*args)

    transaction.on_commit(book)
