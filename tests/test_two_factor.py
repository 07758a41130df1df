"""Two-factor sign-in (TOTP, django-otp): enrolment, the code step after the
password, the wrong-code throttle, turning it off, and mandatory mode for
superusers and team admins (TWO_FACTOR_REQUIRED_FOR_ADMINS)."""

import logging
import re
import time
from base64 import b32encode
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import PASSWORD

LOGIN = reverse("login")
CODE = reverse("twofactor:verify")
MANAGE = reverse("twofactor:manage")
RUNS = reverse("runs:run_list", args=["acme"])
CONNECTIONS = reverse("teams:connection_list", args=["acme"])


@pytest.fixture
def no_backoff(settings):
    """django-otp's own exponential back-off (1 s, 2 s, 4 s... after each wrong
    code) off, so a test can send a right code straight after a wrong one."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def code_for(device, *, wrong=False) -> str:
    """The code the person's app shows now (or the next one, when this one is
    used up: each code works once), from the device's key."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    if totp.t() <= device.last_t:
        totp.time += device.step * (device.last_t + 1 - totp.t())
    token = totp.token()
    if wrong:
        token = (token + 1) % 10**device.digits
    return f"{token:0{device.digits}d}"


def sign_in(client, user, next_url=RUNS):
    return client.post(
        LOGIN, {"username": user.get_username(), "password": PASSWORD, "next": next_url}
    )


def device_for(user, *, confirmed=True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=confirmed)


def enrol(client, user) -> TOTPDevice:
    """Set up two-factor through the pages, as the person would."""
    assert client.post(reverse("twofactor:setup")).status_code == 302
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(reverse("twofactor:confirm"), {"code": code_for(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    return device


def text(response) -> str:
    return response.content.decode()


# --- enrolment --------------------------------------------------------------------------


def test_enrolment_shows_the_key_uri_and_qr_and_a_first_code_turns_it_on(
    world, client_as, no_backoff
):
    client = client_as(world.viewer)
    page = text(client.get(MANAGE))
    assert "Off." in page and "Set up two-factor sign-in" in page

    assert client.post(reverse("twofactor:setup"))["Location"] == MANAGE
    device = TOTPDevice.objects.get(user=world.viewer)
    assert not device.confirmed
    response = client.get(MANAGE)
    page = text(response)
    secret = b32encode(device.bin_key).decode().rstrip("=")
    assert " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) in page
    assert f"otpauth://totp/Skyvern%20support%20console%3Aacme-viewer?secret={secret}" in (
        page.replace("&amp;", "&")
    )
    assert "<svg" in page and "QR code for your authenticator app" in page
    assert " style=" not in page and "<style" not in page and "data:" not in page
    assert "no-store" in response["Cache-Control"]

    wrong = client.post(reverse("twofactor:confirm"), {"code": code_for(device, wrong=True)})
    assert wrong.status_code == 200
    assert "That code is not right" in text(wrong)
    device.refresh_from_db()
    assert not device.confirmed

    right = client.post(reverse("twofactor:confirm"), {"code": code_for(device)})
    assert right["Location"] == MANAGE
    device.refresh_from_db()
    assert device.confirmed
    page = text(client.get(MANAGE))
    assert "Two-factor sign-in is on" in page
    assert secret not in page, "the key is shown only while setting up"
    # This session proved the code: it goes on working.
    assert client.get(RUNS).status_code == 200


def test_the_account_page_is_named_for_both_of_its_settings(world, client_as):
    """It holds the time zone as well as two-factor sign-in: the demo walk
    found it headed "Two-factor sign-in" only."""
    html = client_as(world.viewer).get(MANAGE).content.decode()
    assert "<title>Your account · Skyvern support console</title>" in html
    headings = re.findall(r"<h[12][^>]*>([^<]+)</h[12]>", html)
    start = headings.index("Your account")
    assert headings[start : start + 3] == ["Your account", "Two-factor sign-in", "Time zone"]


def test_starting_again_makes_a_new_key(world, client_as):
    client = client_as(world.viewer)
    client.post(reverse("twofactor:setup"))
    first = TOTPDevice.objects.get(user=world.viewer).key
    client.post(reverse("twofactor:setup"))
    devices = TOTPDevice.objects.filter(user=world.viewer)
    assert devices.count() == 1 and devices.get().key != first


# --- signing in ---------------------------------------------------------------------------


def test_without_a_device_signing_in_goes_straight_in(world, client):
    response = sign_in(client, world.operator)
    assert response["Location"] == RUNS
    assert client.get(RUNS).status_code == 200
    assert client.get(CODE)["Location"] == reverse("home")


def test_with_a_device_the_code_page_comes_before_anything_else(world, client, no_backoff):
    device = device_for(world.admin)
    assert sign_in(client, world.admin)["Location"] == RUNS

    for url in (RUNS, CONNECTIONS, reverse("home"), MANAGE, LOGIN):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(CODE), url
    assert client.get(RUNS)["Location"] == f"{CODE}?next=%2Ft%2Facme%2Fruns%2F"
    # A fragment request sends the whole page to the code step.
    fragment = client.get(RUNS, headers={"HX-Request": "true"})
    assert fragment["HX-Redirect"] == CODE
    # Nor does a POST get through.
    assert client.post(reverse("twofactor:setup"))["Location"].startswith(CODE)
    assert TOTPDevice.objects.filter(user=world.admin).count() == 1

    page = client.get(f"{CODE}?next={RUNS}")
    assert page.status_code == 200
    assert "Enter your code" in text(page)

    wrong = client.post(CODE, {"code": code_for(device, wrong=True), "next": RUNS})
    assert wrong.status_code == 200
    assert "That code is not right" in text(wrong)
    assert client.get(RUNS)["Location"].startswith(CODE)

    session_before = client.session.session_key
    right = client.post(CODE, {"code": code_for(device), "next": RUNS})
    assert right["Location"] == RUNS
    assert client.session.session_key != session_before, "the session key is renewed"
    assert client.get(RUNS).status_code == 200
    assert client.get(CONNECTIONS).status_code == 200
    # The code page has nothing more to ask.
    assert client.get(CODE)["Location"] == reverse("home")


def test_a_used_code_does_not_work_twice(world, client, no_backoff):
    device = device_for(world.viewer)
    sign_in(client, world.viewer)
    code = code_for(device)
    assert client.post(CODE, {"code": code})["Location"] == reverse("home")
    client.post(reverse("logout"))

    sign_in(client, world.viewer)
    assert client.post(CODE, {"code": code}).status_code == 200
    assert client.get(RUNS)["Location"].startswith(CODE)


@pytest.mark.parametrize("junk", ["", "abcdef", "12 34", "1" * 50, "<script>"])
def test_malformed_codes_are_refused_plainly(world, client, no_backoff, junk):
    device_for(world.viewer)
    sign_in(client, world.viewer)
    response = client.post(CODE, {"code": junk})
    assert response.status_code == 200
    assert "That code is not right" in text(response)


def test_the_code_page_does_not_redirect_off_site(world, client, no_backoff):
    device = device_for(world.viewer)
    sign_in(client, world.viewer)
    response = client.post(CODE, {"code": code_for(device), "next": "https://evil.example/"})
    assert response["Location"] == reverse("home")


def test_repeated_wrong_codes_sign_the_person_out(world, client, no_backoff):
    device = device_for(world.operator)
    sign_in(client, world.operator)
    limit = django_settings.TWO_FACTOR_CODE_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert client.post(CODE, {"code": code_for(device, wrong=True)}).status_code == 200

    last = client.post(CODE, {"code": code_for(device, wrong=True)}, follow=True)

    assert last.redirect_chain[-1][0] == LOGIN
    assert f"{limit} wrong two-factor codes in a row: you have been signed out" in text(last)
    assert client.get(RUNS)["Location"].startswith(LOGIN)
    # Signing in again starts a fresh count (the device's own back-off still applies).
    sign_in(client, world.operator)
    assert client.post(CODE, {"code": code_for(device)})["Location"] == reverse("home")


def test_a_right_code_straight_after_a_wrong_one_must_wait(world, client):
    """django-otp's back-off on the device: 1 s after one wrong code, then 2, 4..."""
    device = device_for(world.viewer)
    sign_in(client, world.viewer)
    client.post(CODE, {"code": code_for(device, wrong=True)})

    hurried = client.post(CODE, {"code": code_for(device)})
    assert hurried.status_code == 200
    assert "Too many wrong codes in a row: wait 1 second," in text(hurried)

    device.refresh_from_db()
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=device.throttling_failure_timestamp - timedelta(seconds=5)
    )
    assert client.post(CODE, {"code": code_for(device)})["Location"] == reverse("home")


def test_signing_out_works_from_the_code_page(world, client):
    device_for(world.viewer)
    sign_in(client, world.viewer)
    response = client.post(reverse("logout"))
    assert response["Location"] == LOGIN
    assert client.get(RUNS)["Location"].startswith(LOGIN)


# --- turning it off -------------------------------------------------------------------------


def test_turning_it_off_needs_a_current_code(world, client_as, no_backoff):
    client = client_as(world.operator)
    device = enrol(client, world.operator)

    wrong = client.post(reverse("twofactor:disable"), {"code": code_for(device, wrong=True)})
    assert wrong.status_code == 200
    assert "That code is not right" in text(wrong)
    assert TOTPDevice.objects.filter(user=world.operator).exists()
    assert client.post(reverse("twofactor:disable"), {}).status_code == 200
    assert TOTPDevice.objects.filter(user=world.operator).exists()

    right = client.post(reverse("twofactor:disable"), {"code": code_for(device)})
    assert right["Location"] == MANAGE
    assert not TOTPDevice.objects.filter(user=world.operator).exists()
    assert "Two-factor sign-in is off" in text(client.get(MANAGE))
    # And the next sign-in asks for no code.
    client.post(reverse("logout"))
    sign_in(client, world.operator)
    assert client.get(RUNS).status_code == 200


# --- mandatory for admins -------------------------------------------------------------------


@pytest.mark.parametrize("person", ["admin", "superuser"])
def test_mandatory_mode_keeps_an_admin_on_the_enrolment_page(
    world, client, settings, no_backoff, person
):
    settings.TWO_FACTOR_REQUIRED_FOR_ADMINS = True
    user = getattr(world, person)
    sign_in(client, user)

    for url in (RUNS, CONNECTIONS, reverse("home")):
        assert client.get(url)["Location"] == MANAGE, url
    assert client.get(RUNS, headers={"HX-Request": "true"})["HX-Redirect"] == MANAGE
    page = text(client.get(MANAGE))
    assert "Your role requires two-factor sign-in" in page

    enrol(client, user)

    assert client.get(RUNS).status_code == 200
    # Next time, the code step as for everyone with a device.
    client.post(reverse("logout"))
    sign_in(client, user)
    assert client.get(RUNS)["Location"].startswith(CODE)


@pytest.mark.parametrize("person", ["viewer", "operator", "outsider"])
def test_mandatory_mode_does_not_force_other_roles(world, client, settings, person):
    settings.TWO_FACTOR_REQUIRED_FOR_ADMINS = True
    sign_in(client, getattr(world, person))
    response = client.get(reverse("home"))
    assert response.status_code in (200, 302)
    assert response.get("Location") != MANAGE
    assert "Your role requires" not in text(client.get(MANAGE))


def test_without_the_setting_admins_are_not_forced(world, client):
    sign_in(client, world.admin)
    assert client.get(CONNECTIONS).status_code == 200


def test_in_mandatory_mode_turning_it_off_means_setting_it_up_again(
    world, client_as, settings, no_backoff
):
    settings.TWO_FACTOR_REQUIRED_FOR_ADMINS = True
    client = client_as(world.admin)
    device = enrol(client, world.admin)
    client.post(reverse("twofactor:disable"), {"code": code_for(device)})
    assert client.get(CONNECTIONS)["Location"] == MANAGE


# --- the secret stays secret ----------------------------------------------------------------


def test_the_key_and_codes_never_reach_the_logs(world, client, caplog, no_backoff):
    caplog.set_level(logging.DEBUG)
    sign_in(client, world.admin)
    device = enrol(client, world.admin)
    client.post(reverse("logout"))
    sign_in(client, world.admin)
    wrong = code_for(device, wrong=True)
    client.post(CODE, {"code": wrong})
    right = code_for(device)
    client.post(CODE, {"code": right})
    client.post(reverse("twofactor:disable"), {"code": code_for(device)})

    secret = b32encode(device.bin_key).decode().rstrip("=")
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "two-factor sign-in verified" in logged
    assert "two-factor code refused" in logged
    for needle in (device.key, secret, secret[:16], wrong, right):
        assert needle not in logged


def test_the_django_admin_never_shows_a_key(world, client_as):
    device = device_for(world.viewer)
    client = client_as(world.superuser)
    url = reverse("admin:otp_totp_totpdevice_change", args=[device.pk])
    page = client.get(url)
    assert page.status_code == 200
    secret = b32encode(device.bin_key).decode().rstrip("=")
    assert device.key not in text(page) and secret not in text(page)
    assert client.get(f"{url.rsplit('/change/', 1)[0]}/config/").status_code in (403, 404)


def test_two_factor_changes_and_refused_codes_are_audited(world, client_as, no_backoff):
    from console.audit.models import AuditEntry

    client = client_as(world.admin)
    device = enrol(client, world.admin)
    client.post(reverse("twofactor:disable"), {"code": code_for(device, wrong=True)})
    client.post(reverse("twofactor:disable"), {"code": code_for(device)})
    actions = list(
        AuditEntry.objects.filter(user=world.admin, action__startswith="two_factor")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["two_factor_on", "two_factor_off"]

    device = enrol(client, world.admin)
    client.logout()
    sign_in(client, world.admin)
    client.post(reverse("twofactor:verify"), {"code": code_for(device, wrong=True)})
    refused = AuditEntry.objects.get(user=world.admin, action="two_factor_code_refused")
    assert refused.outcome == "refused" and refused.details == {"failures": 1, "signed_out": False}


def test_the_account_page_keeps_the_navigation_of_the_team_the_person_came_from(world, client_as):
    client = client_as(world.admin)
    html = client.get(MANAGE).content.decode()
    assert RUNS not in html.split("</header>")[0].split("team-switcher")[0]  # no team yet

    # The header's link to the account page, from a team's page, names the team.
    runs_page = client.get(RUNS).content.decode()
    account = f"{MANAGE}?team=acme"
    assert f'<a href="{account}"' in runs_page
    header = client.get(account).content.decode().split("</header>")[0]
    assert f'<a href="{RUNS}"' in header and f'<a href="{CONNECTIONS}"' in header
    assert "Team: <strong>Acme Logistics</strong>" in header
    # ...and keeps it for the page's own forms, which come back without it.
    header = client.get(MANAGE).content.decode().split("</header>")[0]
    assert f'<a href="{CONNECTIONS}"' in header
    # A team they are not in is not shown.
    header = client.get(MANAGE, {"team": "globex"}).content.decode().split("</header>")[0]
    assert "Globex" not in header

    # A team they may no longer see is not kept.
    world.admin.memberships.all().delete()
    header = client.get(MANAGE).content.decode().split("</header>")[0]
    assert f'<a href="{CONNECTIONS}"' not in header and "Choose a team" in header
