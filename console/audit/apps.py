from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "console.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        # Sign-in, sign-out, failed sign-in and lockout are recorded by signal
        # receivers (receivers.py); the request's address and browser by the
        # request_started receiver (services.py).
        from .receivers import connect_sign_in_signals
        from .services import connect_request_signals

        connect_sign_in_signals()
        connect_request_signals()
