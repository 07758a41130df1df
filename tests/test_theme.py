"""The colour theme: Auto (the system's) by default, Light or Dark when chosen,
remembered in a cookie by a plain POST form (console/theme.py)."""

import re

import pytest
from django.template.loader import get_template
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from console.theme import COOKIE

RUNS = "/t/acme/runs/"


def html_tag(response) -> str:
    return re.search(r"<html[^>]*>", response.content.decode()).group(0)


def pressed(response) -> list[str]:
    return re.findall(r'value="(\w+)" aria-pressed="true"', response.content.decode())


def test_by_default_pages_follow_the_system(world, client_as):
    response = client_as(world.viewer).get(RUNS)
    assert "data-theme" not in html_tag(response)
    assert pressed(response) == ["auto"]
    assert 'Theme: <span class="theme-current">Auto</span>' in response.content.decode()


@pytest.mark.parametrize("choice", ["light", "dark"])
def test_a_chosen_theme_is_remembered_and_drawn(world, client_as, choice):
    client = client_as(world.viewer)
    response = client.post("/theme/", {"theme": choice, "next": RUNS})
    assert response.status_code == 302
    assert response["Location"] == RUNS
    cookie = response.cookies[COOKIE]
    assert cookie.value == choice
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] > 86400 * 300
    page = client.get(RUNS)
    assert f'data-theme="{choice}"' in html_tag(page)
    assert pressed(page) == [choice]


def test_auto_again_follows_the_system(world, client_as):
    client = client_as(world.viewer)
    client.post("/theme/", {"theme": "dark", "next": RUNS})
    client.post("/theme/", {"theme": "auto", "next": RUNS})
    assert "data-theme" not in html_tag(client.get(RUNS))


def test_an_unknown_theme_is_auto(world, client_as):
    client = client_as(world.viewer)
    client.cookies[COOKIE] = '"><script>alert(1)</script>'
    assert "data-theme" not in html_tag(client.get(RUNS))
    response = client.post("/theme/", {"theme": "neon", "next": RUNS})
    assert response.cookies[COOKIE].value == "auto"


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", ""])
def test_the_switch_never_sends_people_off_site(world, client_as, next_url):
    response = client_as(world.viewer).post("/theme/", {"theme": "dark", "next": next_url})
    assert response["Location"] == "/"


def test_the_script_gets_an_empty_answer(world, client_as):
    response = client_as(world.viewer).post(
        "/theme/", {"theme": "dark", "next": RUNS}, headers={"X-Theme-Switch": "1"}
    )
    assert response.status_code == 204
    assert response.cookies[COOKIE].value == "dark"


def test_the_sign_in_page_has_the_switch_and_it_works_signed_out(db):
    client = Client()
    page = client.get("/login/")
    assert pressed(page) == ["auto"]
    response = client.post("/theme/", {"theme": "dark", "next": "/login/"})
    assert response["Location"] == "/login/"
    assert 'data-theme="dark"' in html_tag(client.get("/login/"))


def test_it_works_before_the_second_sign_in_step(world, client_as):
    TOTPDevice.objects.create(user=world.operator, name="Authenticator app", confirmed=True)
    client = client_as(world.operator)  # password only: the code page comes first
    response = client.post("/theme/", {"theme": "dark", "next": "/login/code/"})
    assert response["Location"] == "/login/code/"
    assert 'data-theme="dark"' in html_tag(client.get("/login/code/"))


def test_the_switch_needs_the_csrf_token(world):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.viewer)
    response = strict.post("/theme/", {"theme": "dark", "next": RUNS})
    assert response.status_code == 403
    assert COOKIE not in response.cookies
    page = strict.get(RUNS)
    token = re.search(
        r'action="/theme/" class="theme-choice"><input type="hidden" name="csrfmiddlewaretoken" '
        r'value="([^"]+)"',
        page.content.decode(),
    ).group(1)
    response = strict.post("/theme/", {"theme": "dark", "next": RUNS, "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_the_switch_only_takes_posts(world, client_as):
    assert client_as(world.viewer).get("/theme/?theme=dark").status_code == 405


def test_the_server_error_page_follows_the_system(db):
    """Django renders 500.html without any context: it follows the system."""
    html = get_template("500.html").render()
    assert "data-theme" not in re.search(r"<html[^>]*>", html).group(0)
