from django.db import models


class TaskChain(models.Model):
    """A background task that books its own next round (the periodic sync,
    the bulk retry watchdog).

    Its row is the lock under which a round is booked, so that there is never
    more than one chain, and it holds the running round's last sign of life,
    by which a round whose worker was killed is told from a slow one
    (`console.background.chains`).
    """

    task_path = models.CharField(max_length=200, unique=True)
    beat_at = models.DateTimeField(null=True, blank=True)
    revived_at = models.DateTimeField(null=True, blank=True)
    revivals = models.PositiveIntegerField(default=0)

    def __str__(self):
        return self.task_path


class WorkerBeat(models.Model):
    """The last sign of life of one `manage.py db_worker` process, written by
    its keeper thread every few seconds (`console.background.workers`), so
    that health checks can tell "a worker is running" from "none is"."""

    worker = models.CharField(max_length=200, unique=True)  # host:pid
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return self.worker
