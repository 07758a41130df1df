"""Signing in: lockout after repeated failures (django-axes, per account and
address), the session timeout, and sign-out everywhere on a password change."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from console.logins import client_ip
from tests.conftest import PASSWORD

LOGIN = reverse("login")
RUNS = reverse("runs:run_list", args=["acme"])
OFFICE = "198.51.100.7"
ELSEWHERE = "203.0.113.50"


def attempt(client, user, password, *, address=OFFICE):
    return client.post(
        LOGIN,
        {"username": user.get_username(), "password": password, "next": RUNS},
        REMOTE_ADDR=address,
    )


def fail_until_locked(client, user, *, address=OFFICE):
    responses = [
        attempt(client, user, "not the password", address=address)
        for _ in range(django_settings.AXES_FAILURE_LIMIT)
    ]
    return responses


def is_signed_in(client) -> bool:
    return client.get(RUNS).status_code == 200


def test_a_wrong_password_says_so_on_the_login_page(world, client):
    response = attempt(client, world.operator, "not the password")
    assert response.status_code == 200
    assert "That username and password don't match" in response.content.decode()
    assert not is_signed_in(client)


def test_repeated_wrong_passwords_lock_the_account_from_that_address(world, client):
    responses = fail_until_locked(client, world.operator)

    # Before the limit: the ordinary "doesn't match" answer.
    assert all(r.status_code == 200 for r in responses[:-1])
    locked = responses[-1]
    assert locked.status_code == 429
    html = locked.content.decode()
    assert "Sign-in locked" in html
    assert "Too many failed sign-ins for this account from your address" in html
    assert "try again in 15 minutes" in html
    assert "<style" not in html and " style=" not in html


def test_the_right_password_is_refused_while_locked(world, client):
    fail_until_locked(client, world.operator)

    response = attempt(client, world.operator, PASSWORD)

    assert response.status_code == 429
    assert "Sign-in locked" in response.content.decode()
    assert not is_signed_in(client)


def test_another_account_from_the_same_address_is_not_locked(world, client):
    fail_until_locked(client, world.operator)

    response = attempt(Client(), world.viewer, PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == RUNS


def test_the_same_account_from_another_address_is_not_locked(world, client):
    fail_until_locked(client, world.operator)

    response = attempt(Client(), world.operator, PASSWORD, address=ELSEWHERE)

    assert response.status_code == 302


def test_the_lock_ends_after_the_cool_off(world, client, settings):
    fail_until_locked(client, world.operator)
    assert attempt(client, world.operator, PASSWORD).status_code == 429

    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = attempt(client, world.operator, PASSWORD)

    assert response.status_code == 302
    assert is_signed_in(client)


def test_a_successful_sign_in_resets_the_count(world, client):
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, world.operator, "not the password")
    assert attempt(client, world.operator, PASSWORD).status_code == 302
    client.post(reverse("logout"))

    # As many failures again as before: still one short of the limit.
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, world.operator, "not the password").status_code == 200
    assert attempt(client, world.operator, PASSWORD).status_code == 302


def test_force_login_is_not_counted(world, client):
    """The test suite's force_login bypasses authenticate(): axes neither sees
    nor blocks it, even for a locked account."""
    fail_until_locked(client, world.operator)
    client.force_login(world.operator)
    assert is_signed_in(client)


def test_a_lockout_does_not_leak_whether_the_account_exists(db, client):
    """An unknown username is locked the same way, with the same page."""
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        response = client.post(LOGIN, {"username": "nobody", "password": "x"}, REMOTE_ADDR=OFFICE)
    assert response.status_code == 429
    assert "Sign-in locked" in response.content.decode()


# --- the client's address behind proxies --------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "10.0.0.2"),  # no proxy: a client-written header is ignored
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client's own entry is not trusted
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.5", "203.0.113.9"),
        (2, "203.0.113.9", "10.0.0.2"),  # fewer entries than proxies: REMOTE_ADDR
    ],
)
def test_client_ip_trusts_only_the_proxies_own_entries(settings, proxies, forwarded, expected):
    settings.CONSOLE_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


# --- the session --------------------------------------------------------------------------


def test_a_sign_in_lasts_eight_hours_and_ends_with_the_browser(world, client):
    assert attempt(client, world.viewer, PASSWORD).status_code == 302

    assert django_settings.SESSION_COOKIE_AGE == 8 * 3600
    assert client.session.get_expiry_age() == 8 * 3600
    assert client.session.get_expire_at_browser_close()
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    assert not cookie["max-age"] and not cookie["expires"], "a browser-session cookie"


def test_an_expired_session_is_sent_to_sign_in(world, client):
    assert attempt(client, world.viewer, PASSWORD).status_code == 302
    assert is_signed_in(client)

    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(RUNS)

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_a_password_change_signs_out_every_session(world, client):
    """Django's session auth hash: a session made with the old password is void."""
    other_browser = Client()
    assert attempt(client, world.viewer, PASSWORD).status_code == 302
    assert attempt(other_browser, world.viewer, PASSWORD, address=ELSEWHERE).status_code == 302

    world.viewer.set_password("a brand new passphrase 42")
    world.viewer.save()

    for browser in (client, other_browser):
        response = browser.get(RUNS)
        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN)
    assert attempt(Client(), world.viewer, PASSWORD, address=ELSEWHERE).status_code == 200


def test_password_validators_refuse_weak_passwords(world):
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    for weak in ("password", "12345678901", "acme-viewer1", "short"):
        with pytest.raises(ValidationError):
            validate_password(weak, world.viewer)


def test_a_nul_in_the_user_agent_of_a_failed_sign_in_is_no_server_error(world, client):
    """django-axes stores the user agent of a failed sign-in; PostgreSQL can't
    store a NUL, so one must never reach it."""
    response = client.post(
        reverse("login"),
        {"username": world.operator.username, "password": "wrong password"},
        HTTP_USER_AGENT="evil\x00agent",
    )
    assert response.status_code == 200
    assert "don't match" in response.content.decode()
