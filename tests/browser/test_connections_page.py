"""Replacing a connection's key in a real Chromium: the key is tested first
(issue 11, defect 9), and the page says what happened and what to do."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import KEY_A, KEY_B, PASSWORD

from .conftest import sign_in

pytestmark = pytest.mark.browser

CONNECTIONS = "/t/acme/connections/"
WRONG_KEY = "sk-wrong-key-not-an-org-0000-ZZZZ"
ROTATED_KEY = "sk-live-rotated-acme-4d3c2b1a-RT56"


def replace_key_with(page, key):
    page.get_by_label("New API key").fill(key)
    page.get_by_role("button", name="Replace key").click()


def test_admin_replaces_a_key_refused_then_of_another_organisation(page, live_world, console_watch):
    live_world.add_run(status="failed")
    live_world.add_run(status="completed")
    sign_in(page, live_world.admin, PASSWORD, then=CONNECTIONS)

    page.get_by_role("link", name="Replace key").click()
    expect(page.get_by_role("heading", name="Replace the API key of “Skyvern”")).to_be_visible()

    replace_key_with(page, WRONG_KEY)

    expect(page.get_by_text("Skyvern refused this key (HTTP 403")).to_be_visible()
    expect(page.get_by_label("New API key")).to_have_value("")

    replace_key_with(page, KEY_B)

    expect(page.get_by_text("it belongs to another Skyvern organisation")).to_be_visible()
    confirm = page.get_by_label("Use this key anyway: its 2 cached runs will no longer match it")
    confirm.check()
    replace_key_with(page, KEY_B)

    expect(page).to_have_url(re.compile(re.escape(CONNECTIONS) + "$"))
    expect(page.get_by_text("The API key of “Skyvern” was replaced.")).to_be_visible()
    expect(page.get_by_role("cell", name="••••Z9Y8")).to_be_visible()

    page.get_by_role("button", name="Test connection").first.click()

    expect(page.get_by_role("status").filter(has_text="sees none")).to_contain_text(
        "it belongs to another Skyvern organisation"
    )
    html = page.content()
    assert KEY_A not in html and KEY_B not in html and WRONG_KEY not in html
    console_watch.assert_clean()


def test_admin_saves_a_key_untested_and_a_later_test_clears_the_note(
    page, live_world, console_watch
):
    live_world.add_run(status="failed")
    live_world.simulator.state.add_key(KEY_A, ROTATED_KEY)
    live_world.simulator.state.configure(error_rates={500: 1.0})
    sign_in(page, live_world.admin, PASSWORD, then=CONNECTIONS)
    page.get_by_role("link", name="Replace key").click()

    replace_key_with(page, ROTATED_KEY)

    expect(page.get_by_text("Skyvern had an internal error (HTTP 500)")).to_be_visible()
    page.get_by_label("Save without testing").check()
    replace_key_with(page, ROTATED_KEY)

    expect(page.get_by_text("but the new key is untested")).to_be_visible()
    untested = page.get_by_text("Key untested")
    expect(untested).to_be_visible()

    live_world.simulator.state.configure(error_rates={})
    page.get_by_role("button", name="Test connection").first.click()

    expect(page.get_by_role("status").filter(has_text="OK")).to_have_text(
        "OK — Skyvern accepted the key."
    )
    expect(untested).to_have_count(0)
    console_watch.assert_clean()
