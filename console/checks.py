"""`manage.py check --deploy`: what a production install must not rely on.

Django's own deployment checks cover cookies, HSTS and DEBUG; these cover the
console's: secrets generated into files under var/ (the demo's way) and the
demo's directory for static files.
"""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

GENERATED_SECRET_HINTS = {
    "SECRET_KEY": "Set SECRET_KEY in the environment (50+ random characters).",
    "CONSOLE_ENCRYPTION_KEYS": (
        "Set CONSOLE_ENCRYPTION_KEYS in the environment. If connections were already "
        "saved with the generated key, use the value of that file, or their API keys "
        "stay unreadable."
    ),
}


@register(Tags.security, deploy=True)
def secrets_from_the_environment(app_configs, **kwargs):
    """Error for each secret read from a file made under var/: lose that
    directory and sessions end (SECRET_KEY) or every stored Skyvern API key
    is unreadable (CONSOLE_ENCRYPTION_KEYS)."""
    return [
        Error(
            f"{name} was read from a file generated under {settings.VAR_DIR}, "
            "not from the environment.",
            hint=hint,
            id=f"console.E00{number}",
        )
        for number, (name, hint) in enumerate(GENERATED_SECRET_HINTS.items(), start=1)
        if name in settings.GENERATED_SECRETS
    ]


@register(Tags.staticfiles, deploy=True)
def static_root_of_its_own(app_configs, **kwargs):
    """Without a STATIC_ROOT of its own (settings.py), collectstatic writes into
    the demo's var/static and the server serves the checkout's static/ as it is."""
    if settings.WHITENOISE_USE_FINDERS:
        return [
            Warning(
                "STATIC_ROOT is not set: collectstatic writes into the demo's "
                f"{settings.STATIC_ROOT}, and static files are served uncompressed from "
                "the checkout.",
                hint="Set STATIC_ROOT to a directory of its own, e.g. /srv/console/static, "
                "and run collectstatic.",
                id="console.W001",
            )
        ]
    return []
