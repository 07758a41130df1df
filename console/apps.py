from django.apps import AppConfig

from console import checks  # noqa: F401 - registering the console's system checks


class ConsoleConfig(AppConfig):
    """The project itself, an app only so that its system checks are registered."""

    name = "console"
    label = "console"
    verbose_name = "Skyvern support console"
