"""Signing in with the company's identity provider, in Chromium: the
console's button, the provider's own sign-in page (a real OpenID Connect
provider on loopback, tests/oidc_provider/), and back in the console with
the team role the person's group maps to — or refused, saying why."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import expect

from console.teams.models import Membership, Role
from tests.oidc_provider.provider import PASSWORD as PROVIDER_PASSWORD

pytestmark = pytest.mark.browser

RUNS = reverse("runs:run_list", args=["acme"])


def sign_in_at_provider(page, username):
    page.goto(RUNS)
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_role("button", name="Sign in with Example IdP").click()
    expect(page.get_by_role("heading", name="Example IdP")).to_be_visible()
    page.get_by_label("Company username").fill(username)
    page.get_by_label("Company password").fill(PROVIDER_PASSWORD)
    page.get_by_role("button", name="Continue").click()


def test_sign_in_with_the_provider_lands_in_the_team_with_the_mapped_role(
    live_world, page, console_watch, oidc_on
):
    sign_in_at_provider(page, "dana")
    expect(page).to_have_url(re.compile(re.escape(RUNS) + r"$"))
    expect(page.get_by_role("link", name="dana@example.com")).to_be_visible()
    dana = get_user_model().objects.get(email="dana@example.com")
    assert Membership.objects.get(user=dana, team=live_world.team_a).role == Role.OPERATOR
    console_watch.assert_clean()


def test_a_person_of_a_disallowed_domain_is_refused_with_a_clear_message(
    live_world, page, console_watch, oidc_on
):
    sign_in_at_provider(page, "mallory")
    expect(page).to_have_url(re.compile(r"/login/$"))
    refusal = page.get_by_text("Accounts at elsewhere.org can't sign in to this console")
    expect(refusal).to_be_visible()
    expect(page.get_by_role("button", name="Sign in with Example IdP")).to_be_visible()
    assert not get_user_model().objects.filter(email="mallory@elsewhere.org").exists()
    console_watch.assert_clean()
