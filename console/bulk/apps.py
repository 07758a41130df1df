from django.apps import AppConfig

from console.runs.signals import retry_linked


class BulkConfig(AppConfig):
    name = "console.bulk"
    label = "bulk"
    verbose_name = "Bulk retry"

    def ready(self):
        from .services.checking import bulk_item_follow_link

        retry_linked.connect(bulk_item_follow_link, dispatch_uid="bulk_item_follow_link")
