from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BackgroundConfig(AppConfig):
    name = "console.background"
    label = "background"
    verbose_name = "Background work"

    def ready(self):
        # Every app's tasks.py binds its tasks to the slots and chains its
        # services book (`console.background.queue.TaskSlot`): import them all,
        # in web processes as in workers.
        autodiscover_modules("tasks")
