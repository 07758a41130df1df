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
