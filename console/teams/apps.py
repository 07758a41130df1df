from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "console.teams"
    label = "teams"
    verbose_name = "Teams and Skyvern connections"

    def ready(self):
        # The person's time zone is read as they sign in (timezones.py).
        from . import timezones  # noqa: F401
