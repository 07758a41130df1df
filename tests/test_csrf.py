"""Every POST needs the CSRF token; htmx sends it from the <body hx-headers>.

Also: the pages are ready for a strict Content-Security-Policy (no inline
script bodies, no style attributes, no inline event handlers).
"""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from console.runs.models import Retry
from console.teams.models import Connection

HTMX = {"HX-Request": "true"}
BODY_HX_HEADERS = re.compile(r"<body\b[^>]*\shx-headers='([^']*)'[^>]*>")


@pytest.fixture
def strict_client():
    return Client(enforce_csrf_checks=True)


def signed_in(client, user):
    client.force_login(user)
    return client


def token_from(html: str) -> str:
    """The token exactly as htmx reads it: the body's hx-headers JSON."""
    match = BODY_HX_HEADERS.search(html)
    assert match, "the <body> carries hx-headers"
    headers = json.loads(match[1])
    assert set(headers) == {"X-CSRFToken"}
    token = headers["X-CSRFToken"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", token), token
    return token


def retry_url(world, run_id):
    return reverse("runs:run_retry", args=[world.team_a.slug, run_id])


def test_retry_without_a_token_is_refused(world, strict_client):
    client = signed_in(strict_client, world.operator)
    run_id = world.add_run(status="failed")
    client.get(reverse("runs:run_list", args=[world.team_a.slug]))  # has the cookie now

    for headers in ({}, HTMX):
        response = client.post(retry_url(world, run_id), {"seen_retries": "0"}, headers=headers)
        assert response.status_code == 403
    wrong = client.post(
        retry_url(world, run_id),
        {"seen_retries": "0"},
        headers={**HTMX, "X-CSRFToken": "x" * 64},
    )
    assert wrong.status_code == 403
    assert Retry.objects.count() == 0
    assert world.simulator.state.retry_count(run_id) == 0


def test_retry_with_the_token_from_hx_headers_is_accepted(world, strict_client):
    client = signed_in(strict_client, world.operator)
    run_id = world.add_run(status="failed")
    page = client.get(reverse("runs:run_list", args=[world.team_a.slug]))
    token = token_from(page.content.decode())

    response = client.post(
        retry_url(world, run_id),
        {"seen_retries": "0"},
        headers={**HTMX, "X-CSRFToken": token},
    )

    assert response.status_code == 200
    assert world.simulator.state.retry_count(run_id) == 1


def test_retry_as_a_plain_form_with_the_form_token_is_accepted(world, strict_client):
    client = signed_in(strict_client, world.operator)
    run_id = world.add_run(status="failed")
    page = client.get(reverse("runs:run_list", args=[world.team_a.slug])).content.decode()
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert form_token, "the no-JavaScript form carries the token too"

    response = client.post(
        retry_url(world, run_id), {"seen_retries": "0", "csrfmiddlewaretoken": form_token[1]}
    )

    assert response.status_code == 302
    assert world.simulator.state.retry_count(run_id) == 1


def test_connection_test_needs_the_token(world, strict_client):
    client = signed_in(strict_client, world.admin)
    url = reverse("teams:connection_test", args=[world.team_a.slug, world.connection_a.pk])
    page = client.get(reverse("teams:connection_list", args=[world.team_a.slug]))
    token = token_from(page.content.decode())

    assert client.post(url, headers=HTMX).status_code == 403
    assert client.post(url).status_code == 403

    accepted = client.post(url, headers={**HTMX, "X-CSRFToken": token})
    assert accepted.status_code == 200
    assert "OK" in accepted.content.decode()
    plain = client.post(url, headers={"X-CSRFToken": token})
    assert plain.status_code == 302


def test_connection_changes_need_the_token(world, strict_client):
    client = signed_in(strict_client, world.admin)
    pk = world.connection_a.pk
    posts = {
        reverse("teams:connection_create", args=["acme"]): {
            "label": "X",
            "base_url": "https://api.skyvern.com",
            "api_key": "sk-something-1234",
        },
        reverse("teams:connection_edit", args=["acme", pk]): {
            "label": "X",
            "base_url": "https://api.skyvern.com",
        },
        reverse("teams:connection_replace_key", args=["acme", pk]): {"api_key": "sk-other-5678"},
        reverse("teams:connection_delete", args=["acme", pk]): {},
    }
    client.get(reverse("teams:connection_list", args=["acme"]))
    before = list(Connection.objects.values())
    for url, data in posts.items():
        assert client.post(url, data).status_code == 403, url
    assert list(Connection.objects.values()) == before


def test_logout_needs_the_token(world, strict_client):
    client = signed_in(strict_client, world.viewer)
    assert client.post(reverse("logout")).status_code == 403
    page = client.get(reverse("runs:run_list", args=["acme"]))
    assert page.status_code == 200, "still signed in"


# --- CSP-ready pages ------------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]*\sstyle\s*=", re.I)
STYLE_ELEMENT = re.compile(r"<style\b", re.I)
EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)


def pages_of(world):
    """(who, url, headers) for every page a person can open."""
    run_id = world.add_run(status="failed")
    running = world.add_run(status="running")
    pk = world.connection_a.pk
    return [
        (None, reverse("login"), {}),
        (world.superuser, reverse("home"), {}),
        (world.operator, reverse("runs:run_list", args=["acme"]), {}),
        (world.operator, reverse("runs:run_list", args=["acme"]) + "?status=failed&q=wr", {}),
        (world.operator, reverse("runs:run_detail", args=["acme", run_id]), {}),
        (world.operator, reverse("runs:run_detail", args=["acme", running]), {}),
        (world.operator, reverse("runs:run_card", args=["acme", running]), HTMX),
        (world.admin, reverse("teams:connection_list", args=["acme"]), {}),
        (world.admin, reverse("teams:connection_create", args=["acme"]), {}),
        (world.admin, reverse("teams:connection_edit", args=["acme", pk]), {}),
        (world.admin, reverse("teams:connection_replace_key", args=["acme", pk]), {}),
        (world.admin, reverse("teams:connection_delete", args=["acme", pk]), {}),
    ]


def test_pages_carry_the_token_in_the_body_and_are_csp_ready(world):
    for user, url, headers in pages_of(world):
        client = Client(enforce_csrf_checks=True)
        if user is not None:
            client.force_login(user)
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        html = response.content.decode()
        if not headers:
            token_from(html)
        for attributes, body in INLINE_SCRIPT.findall(html):
            assert "src=" in attributes and not body.strip(), f"{url}: inline <script>: {body!r}"
        assert not STYLE_ATTRIBUTE.search(html), f"{url}: style= attribute"
        assert not STYLE_ELEMENT.search(html), f"{url}: inline <style>"
        assert not EVENT_HANDLER.search(html), f"{url}: inline on…= handler"


def test_a_fragment_after_a_post_is_csp_ready_too(world, strict_client):
    client = signed_in(strict_client, world.admin)
    page = client.get(reverse("teams:connection_list", args=["acme"]))
    token = token_from(page.content.decode())
    run_id = world.add_run(status="failed")
    for url in (
        reverse("teams:connection_test", args=["acme", world.connection_a.pk]),
        retry_url(world, run_id),
    ):
        response = client.post(url, {"seen_retries": "0"}, headers={**HTMX, "X-CSRFToken": token})
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), url
        assert not STYLE_ATTRIBUTE.search(html), url
        assert not EVENT_HANDLER.search(html), url
