from django.apps import AppConfig
from django.db.models.signals import post_save


class RunsConfig(AppConfig):
    name = "console.runs"
    label = "runs"
    verbose_name = "Runs and retries"

    def ready(self):
        from .store import runs_lock_create

        post_save.connect(
            runs_lock_create, sender="teams.Connection", dispatch_uid="runs_lock_create"
        )
