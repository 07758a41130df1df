from django.apps import AppConfig
from django.db.models.signals import post_save


class SyncConfig(AppConfig):
    name = "console.sync"
    label = "sync"
    verbose_name = "Run history sync and webhooks"

    def ready(self):
        post_save.connect(
            give_connection_a_sync_state,
            sender="teams.Connection",
            dispatch_uid="give_connection_a_sync_state",
        )


def give_connection_a_sync_state(sender, instance, created, raw=False, **kwargs):
    """Every connection has its sync state (and webhook URL) from the start."""
    if created and not raw:
        from .models import ConnectionSync

        ConnectionSync.objects.get_or_create(connection=instance)
