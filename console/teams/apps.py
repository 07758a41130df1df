from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "console.teams"
    label = "teams"
    verbose_name = "Teams and Skyvern connections"
