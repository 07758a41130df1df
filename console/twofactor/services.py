"""Who needs a second step, and checking a code against a person's device.

The devices are django-otp's TOTPDevice: one confirmed device per person at
most. The secret key never leaves the enrolment page: it is not logged, not
put in a message, and not shown again once the device is confirmed.
"""

import logging

import segno
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.utils import timezone
from django_otp.models import VerifyNotAllowed
from django_otp.plugins.otp_totp.models import TOTPDevice

from console.compiled import CompiledQuery
from console.teams.models import MANAGE, Team

log = logging.getLogger("console.twofactor")

DEVICE_NAME = "Authenticator app"


def confirmed_device(user) -> TOTPDevice | None:
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("pk").first()


def pending_device(user) -> TOTPDevice | None:
    """The device being set up: made, not yet confirmed with a first code."""
    return TOTPDevice.objects.devices_for_user(user, confirmed=False).order_by("-pk").first()


# Asked on every page of someone signed in with a password only: compiled once.
_A_CONFIRMED_DEVICE = CompiledQuery(
    lambda user_pk: TOTPDevice.objects.filter(user_id=user_pk, confirmed=True).values_list("pk")[
        :1
    ],
    -1,
)


def has_confirmed_device(user) -> bool:
    return bool(_A_CONFIRMED_DEVICE.rows(user.pk))


def is_required_for(user) -> bool:
    """With TWO_FACTOR_REQUIRED_FOR_ADMINS: superusers and whoever may manage
    a team (its admins)."""
    if not settings.TWO_FACTOR_REQUIRED_FOR_ADMINS or not user.is_authenticated:
        return False
    return user.is_superuser or Team.objects.restrict(user, MANAGE).exists()


def done_by_provider(request) -> bool:
    """Signed in through the identity provider, whose own sign-in (and MFA)
    stands for the second step, unless OIDC_CONSOLE_TWO_FACTOR asks for the
    console's code as well. Password sign-ins always take the second step."""
    if settings.OIDC_CONSOLE_TWO_FACTOR:
        return False
    return request.session.get(BACKEND_SESSION_KEY) == settings.OIDC_BACKEND


def start_setup(user) -> TOTPDevice:
    """A fresh unconfirmed device (a new secret), replacing any earlier attempt."""
    TOTPDevice.objects.devices_for_user(user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    log.info("two-factor setup started user=%s", user.pk)
    return device


class CodeCheck:
    """The outcome of checking one code: ok, or why not."""

    def __init__(self, ok: bool, *, wait_seconds: int = 0):
        self.ok = ok
        self.wait_seconds = wait_seconds


def normalise(code: str) -> str:
    return "".join((code or "").split())


def check_code(device: TOTPDevice, code: str) -> CodeCheck:
    """Verify `code` on `device` (django-otp: each code works once, and wrong
    codes back off exponentially on the device itself, across sessions)."""
    allowed, why = device.verify_is_allowed()
    if not allowed and why and why.get("reason") == VerifyNotAllowed.N_FAILED_ATTEMPTS:
        wait = (why["locked_until"] - timezone.now()).total_seconds()
        return CodeCheck(False, wait_seconds=max(1, round(wait)))
    code = normalise(code)
    if not (code.isdigit() and len(code) == device.digits):
        device.throttle_increment(commit=True)
        return CodeCheck(False)
    return CodeCheck(device.verify_token(code))


def otpauth_uri(device: TOTPDevice) -> str:
    return device.config_url


def secret_text(device: TOTPDevice) -> str:
    """The key as an authenticator app takes it when typed in: base32, in groups of 4."""
    from base64 import b32encode

    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URI as inline SVG markup (no style attributes: CSP-safe)."""
    return segno.make(otpauth_uri(device), error="m").svg_inline(
        scale=4, dark="#000", light="#fff", title="QR code for your authenticator app"
    )


def remove_devices(user) -> None:
    TOTPDevice.objects.devices_for_user(user, confirmed=None).delete()
