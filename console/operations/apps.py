from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "console.operations"
    label = "operations"
    verbose_name = "Operations"

    def ready(self):
        # Every process that calls Skyvern (web and worker) counts its calls;
        # imported here, once the models it reads are loaded.
        from .metrics import skyvern_calls_count

        skyvern_calls_count()
