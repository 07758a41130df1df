"""Refused webhook deliveries on the Connections page, in a real Chromium:
a delivery signed with the wrong key is refused and its admin sees when,
why and from where; a delivery from the simulator (Skyvern's skewed clock)
is accepted and is not listed."""

import time

import pytest
import requests
from django.urls import reverse
from playwright.sync_api import expect

from console.simulator import render
from console.simulator import webhooks as simulator_webhooks
from console.sync.services import sync_state_for
from tests.conftest import KEY_A, PASSWORD

from .conftest import sign_in

pytestmark = pytest.mark.browser

CONNECTIONS = "/t/acme/connections/"


def deliver(live_server, live_world, body: bytes, key: str) -> int:
    """POST a run-finished webhook as Skyvern would, signed with `key`."""
    token = sync_state_for(live_world.connection_a).webhook_token
    headers = simulator_webhooks.signed_headers(
        body, key, simulator_webhooks.skyvern_timestamp(18000)
    )
    response = requests.post(
        live_server.url + reverse("skyvern_webhook", args=[token]),
        data=body,
        headers=headers,
        timeout=10,
    )
    return response.status_code


def test_an_admin_sees_a_forged_delivery_and_not_the_genuine_one(
    page, live_world, console_watch, live_server
):
    running = live_world.add_run(status="running")
    live_world.simulator.state.set_status(
        running, "failed", "Carrier portal asked for a new password"
    )
    body = render.webhook_payload(
        live_world.simulator.state.get_run(KEY_A, running), live_world.simulator.links()
    )
    assert deliver(live_server, live_world, body, KEY_A) == 200
    assert deliver(live_server, live_world, body, "sk-someone-elses-key") == 401

    sign_in(page, live_world.admin, PASSWORD, then=CONNECTIONS)

    refusals = page.get_by_role("region", name="Refused deliveries to Skyvern")
    rows = refusals.get_by_role("row")
    expect(rows).to_have_count(2)  # the header and the one refusal
    expect(rows.nth(1)).to_contain_text("wrong signature")
    expect(rows.nth(1)).to_contain_text("401")
    expect(rows.nth(1)).to_contain_text("127.0.0.1")
    expect(rows.nth(1)).to_contain_text(time.strftime("%Y-%m-%d", time.gmtime()))
    expect(page.get_by_text("Carrier portal asked for a new password")).to_have_count(0)
    console_watch.assert_clean()
