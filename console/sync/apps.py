from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "console.sync"
    label = "sync"
    verbose_name = "Run history sync and webhooks"
