from django.apps import AppConfig


class TwoFactorConfig(AppConfig):
    name = "console.twofactor"
    label = "twofactor"
    verbose_name = "Two-factor sign-in"
