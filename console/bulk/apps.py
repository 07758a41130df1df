from django.apps import AppConfig

from console.audit.words import job_kinds_register
from console.runs.card_pick import card_pick_register
from console.runs.signals import retry_linked


class BulkConfig(AppConfig):
    name = "console.bulk"
    label = "bulk"
    verbose_name = "Bulk retry"

    def ready(self):
        from .models import JobKind
        from .selection import card_pick_html
        from .services.checking import bulk_item_follow_link

        card_pick_register(card_pick_html)
        job_kinds_register(JobKind.choices)

        retry_linked.connect(bulk_item_follow_link, dispatch_uid="bulk_item_follow_link")
