from django.apps import AppConfig


class OidcConfig(AppConfig):
    name = "console.oidc"
    label = "oidc"
    verbose_name = "Sign-in with the identity provider"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
