from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "console.incidents"
    label = "incidents"
    verbose_name = "Incident view across teams"
