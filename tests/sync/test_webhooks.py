"""Skyvern's run-finished webhooks: a signed delivery updates the cached run,
whatever its (unsigned, hours-off) timestamp says; every other request is
refused, changes nothing and shows on the Connections page; repeats,
re-deliveries, replays and older deliveries change nothing; a database
hiccup asks Skyvern to re-deliver; the key never shows; the simulator
delivers end to end."""

import hashlib
import hmac
import io
import json
import logging
import re
import time

import pytest
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from console.runs import store
from console.runs.models import Retry, Run
from console.simulator import render
from console.sync import webhooks
from console.sync.models import ConnectionSync
from console.sync.services import sync_state_for
from tests.conftest import KEY_A, KEY_B
from tests.helpers import page_text

LOGGER = "console.sync.webhooks"
#: Skyvern 1.0.56's x-skyvern-timestamp from an America/New_York host: its
#: utcnow().timestamp() is 5 h ahead.
NEW_YORK_SKEW = 18000


# --- helpers --------------------------------------------------------------------------


def webhook_url(connection) -> str:
    return reverse("skyvern_webhook", args=[sync_state_for(connection).webhook_token])


def payload(world, run_id: str, key: str = KEY_A) -> bytes:
    """The body Skyvern would send for the run as it is now (raw bytes)."""
    run = world.simulator.state.get_run(key, run_id)
    return render.webhook_payload(run, world.simulator.links())


def sign(body: bytes, key: str = KEY_A) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signed(body: bytes, key: str = KEY_A, *, timestamp=None) -> dict:
    """Headers as Skyvern sends them: by default from a New York host."""
    return {
        "x-skyvern-signature": sign(body, key),
        "x-skyvern-timestamp": str(
            int(time.time()) + NEW_YORK_SKEW if timestamp is None else timestamp
        ),
    }


def deliver(client, url: str, body: bytes, headers: dict, **extra):
    return client.post(url, data=body, content_type="application/json", headers=headers, **extra)


def runs_snapshot() -> list[dict]:
    """Every column of every cached run, synced_at and raw included."""
    return list(Run.objects.order_by("pk").values())


def rejections(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.fixture
def finished(world):
    """A run cached while running that has since failed in Skyvern."""
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed", "Carrier portal asked for a new password")
    return run_id


# --- a valid delivery -----------------------------------------------------------------


def test_a_valid_delivery_updates_the_cached_run(world, client, client_as, finished):
    body = payload(world, finished)
    sent = json.loads(body)

    response = deliver(client, webhook_url(world.connection_a), body, signed(body))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"ok": True}
    run = Run.objects.get(run_id=finished)
    assert run.status == "failed"
    assert run.failure_reason == "Carrier portal asked for a new password"
    assert run.app_url == sent["app_url"] and run.app_url.endswith(f"/runs/{finished}")
    assert run.recording_url == sent["recording_url"] and run.recording_url
    assert run.output == sent["output"]
    # The output once, in its own column: not again in raw, nor as `outputs`.
    assert run.raw == {k: v for k, v in sent.items() if k not in ("output", "outputs")}
    assert sent["outputs"] == sent["output"]
    page = client_as(world.viewer).get(reverse("runs:run_list", args=["acme"]))
    text = page_text(page)
    assert finished in text and "Failed" in text


def test_a_delivery_of_an_uncached_run_adds_it_to_that_team_only(world, client, client_as):
    run_id = world.add_run(cache=False, status="completed")
    body = payload(world, run_id)

    assert deliver(client, webhook_url(world.connection_a), body, signed(body)).status_code == 200

    run = Run.objects.get(run_id=run_id)
    assert (run.team, run.connection, run.status) == (world.team_a, world.connection_a, "completed")
    assert run_id in page_text(client_as(world.viewer).get(reverse("runs:run_list", args=["acme"])))
    outsider_page = client_as(world.outsider).get(reverse("runs:run_list", args=["globex"]))
    assert run_id not in page_text(outsider_page)


def test_no_csrf_token_is_needed(world, finished):
    client = Client(enforce_csrf_checks=True)
    body = payload(world, finished)
    response = deliver(client, webhook_url(world.connection_a), body, signed(body))
    assert response.status_code == 200
    assert Run.objects.get(run_id=finished).status == "failed"


@pytest.mark.parametrize(
    "timestamp",
    [
        str(int(time.time()) + NEW_YORK_SKEW),  # Skyvern on a New York host
        str(int(time.time()) - 9 * 3600),  # ... on a host east of UTC
        str(int(time.time()) - 330),
        str(int(time.time())),
        "yesterday",
        str(int(time.time() * 1000)),
        None,
    ],
)
def test_a_signed_delivery_is_accepted_whatever_its_timestamp_says(
    world, client, finished, timestamp, caplog
):
    """The timestamp isn't signed and Skyvern's is off by its host's UTC
    offset: it is logged, and the signature decides."""
    body = payload(world, finished)
    headers = signed(body)
    if timestamp is None:
        del headers["x-skyvern-timestamp"]
    else:
        headers["x-skyvern-timestamp"] = timestamp
    caplog.set_level(logging.INFO, logger=LOGGER)

    response = deliver(client, webhook_url(world.connection_a), body, headers)

    assert response.status_code == 200
    assert Run.objects.get(run_id=finished).status == "failed"
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "timestamp" in line


def test_the_timestamps_offset_is_logged(world, client, finished, caplog):
    body = payload(world, finished)
    caplog.set_level(logging.INFO, logger=LOGGER)
    deliver(client, webhook_url(world.connection_a), body, signed(body))
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert re.search(r"timestamp \+1(7999|8000|8001) s from now", line)


def test_the_webhook_is_the_only_csrf_exempt_view():
    def callbacks(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    continue
                yield from callbacks(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                yield pattern.name, pattern.callback

    exempt = [
        name
        for name, view in callbacks(get_resolver().url_patterns)
        if getattr(view, "csrf_exempt", False)
    ]
    assert exempt == ["skyvern_webhook"]


# --- rejections -----------------------------------------------------------------------


REJECTIONS = {
    # reason: (build(run_id, good_body) -> (headers, body), expected status)
    "missing signature": (
        lambda r, b: ({"x-skyvern-timestamp": str(int(time.time()))}, b),
        401,
    ),
    "wrong signature": (
        lambda r, b: ({**signed(b), "x-skyvern-signature": sign(b + b" ")}, b),
        401,
    ),
    "signature by another team's key": (lambda r, b: (signed(b, KEY_B), b), 401),
    "malformed hex": (
        lambda r, b: ({**signed(b), "x-skyvern-signature": "zz" * 32}, b),
        401,
    ),
    "short hex": (
        lambda r, b: ({**signed(b), "x-skyvern-signature": sign(b)[:32]}, b),
        401,
    ),
    "hex with spaces": (
        lambda r, b: (
            {
                **signed(b),
                "x-skyvern-signature": " ".join(sign(b)[i : i + 2] for i in range(0, 64, 2)),
            },
            b,
        ),
        401,
    ),
    "prefixed signature": (
        lambda r, b: ({**signed(b), "x-skyvern-signature": "sha256=" + sign(b)}, b),
        401,
    ),
    "not JSON": (lambda r, b: (signed(b"<html>nope</html>"), b"<html>nope</html>"), 400),
    "not UTF-8": (lambda r, b: (signed(b"\xff\xfe{"), b"\xff\xfe{"), 400),
    "JSON that isn't a run": (lambda r, b: (signed(b'{"hello": 1}'), b'{"hello": 1}'), 400),
    "a JSON array": (lambda r, b: (signed(b"[]"), b"[]"), 400),
    "a task run id": (
        lambda r, b: (
            signed(x := b.replace(r.encode(), b"tsk_123")),
            x,
        ),
        400,
    ),
    "an unknown status": (
        lambda r, b: (
            signed(x := b.replace(b'"status":"failed"', b'"status":"exploded"')),
            x,
        ),
        400,
    ),
    "NaN in the body": (
        lambda r, b: (signed(x := b[:-1] + b',"extra":NaN}'), x),
        400,
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_rejected_delivery_changes_nothing(world, client, finished, case, caplog):
    build, status = REJECTIONS[case]
    headers, body = build(finished, payload(world, finished))
    world.add_run(status="completed")  # another cached run, to be left alone too
    before = runs_snapshot()
    caplog.set_level(logging.INFO, logger=LOGGER)

    response = deliver(client, webhook_url(world.connection_a), body, headers)

    assert response.status_code == status, case
    assert response.json() == {"ok": False}  # which check failed is not said
    assert runs_snapshot() == before
    [line] = rejections(caplog)
    message = line.getMessage()
    assert f"connection {world.connection_a.pk}" in message and "127.0.0.1" in message


def test_an_unknown_token_is_not_found(world, client, finished, caplog):
    body = payload(world, finished)
    before = runs_snapshot()
    caplog.set_level(logging.INFO, logger=LOGGER)
    for token in ("no-such-token", sync_state_for(world.connection_a).webhook_token.upper()):
        url = reverse("skyvern_webhook", args=[token])
        response = deliver(client, url, body, signed(body))
        assert response.status_code == 404
        assert response.json() == {"ok": False}
    assert runs_snapshot() == before
    assert len(rejections(caplog)) == 2
    assert "unknown token" in rejections(caplog)[0].getMessage()


def test_another_connections_token_with_this_connections_signature_is_refused(
    world, client, finished
):
    body = payload(world, finished)
    before = runs_snapshot()
    response = deliver(client, webhook_url(world.connection_b), body, signed(body, KEY_A))
    assert response.status_code == 401
    assert runs_snapshot() == before


@pytest.mark.parametrize("method", ["get", "put", "delete", "head"])
def test_other_methods_are_not_allowed(world, client, client_as, finished, method):
    before = runs_snapshot()
    for who in (client, client_as(world.admin)):
        response = getattr(who, method)(webhook_url(world.connection_a))
        assert response.status_code == 405
        assert response["Allow"] == "POST"
    assert runs_snapshot() == before


def test_a_body_over_the_limit_by_content_length_is_refused_unread(
    world, client, finished, settings
):
    body = payload(world, finished)
    settings.WEBHOOK_MAX_BODY_BYTES = len(body) - 1
    before = runs_snapshot()

    response = deliver(client, webhook_url(world.connection_a), body, signed(body))

    assert response.status_code == 413
    assert runs_snapshot() == before
    settings.WEBHOOK_MAX_BODY_BYTES = len(body)
    assert deliver(client, webhook_url(world.connection_a), body, signed(body)).status_code == 200


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1, /):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def direct_request(world, body: bytes, *, content_length: str | None):
    """A request straight to the view whose stream holds `body`, whatever
    Content-Length says (as behind a server that passes chunked bodies on)."""
    request = RequestFactory().post(
        webhook_url(world.connection_a),
        data=body,
        content_type="application/json",
        headers=signed(body),
    )
    if content_length is None:
        del request.META["CONTENT_LENGTH"]
    else:
        request.META["CONTENT_LENGTH"] = content_length
    stream = CountingStream(body)
    request._stream = stream
    return request, stream


def test_a_body_over_the_limit_by_actual_bytes_is_refused_reading_at_most_limit_plus_one(
    world, finished, settings
):
    limit = 1000
    settings.WEBHOOK_MAX_BODY_BYTES = limit
    body = payload(world, finished) + b" " * 5000
    before = runs_snapshot()
    token = sync_state_for(world.connection_a).webhook_token

    for content_length in (None, "", "10", "garbled"):
        request, stream = direct_request(world, body, content_length=content_length)
        response = webhooks.skyvern_webhook(request, token)
        assert response.status_code == 413, content_length
        assert stream.bytes_read == limit + 1

    request, stream = direct_request(world, body, content_length=str(len(body)))
    assert webhooks.skyvern_webhook(request, token).status_code == 413
    assert stream.bytes_read == 0  # refused on Content-Length alone
    assert runs_snapshot() == before


def test_the_default_limit_is_one_mebibyte():
    from django.conf import settings

    assert settings.WEBHOOK_MAX_BODY_BYTES == 1024 * 1024
    assert webhooks.DEFAULT_MAX_BODY_BYTES == 1024 * 1024


# --- idempotence and order ------------------------------------------------------------


@pytest.mark.parametrize("final", ["failed", "completed"])  # completed: with an output
def test_the_same_delivery_twice_changes_nothing_the_second_time(world, client, caplog, final):
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, final)
    body = payload(world, run_id)
    assert (json.loads(body)["output"] is not None) == (final == "completed")
    url = webhook_url(world.connection_a)
    assert deliver(client, url, body, signed(body)).status_code == 200
    after_first = runs_snapshot()
    caplog.set_level(logging.INFO, logger=LOGGER)

    time.sleep(0.01)
    again = deliver(client, url, body, signed(body))

    assert again.status_code == 200 and again.json() == {"ok": True}
    assert runs_snapshot() == after_first  # synced_at included
    assert any("unchanged" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_an_older_delivery_does_not_overwrite_a_newer_one(world, client):
    run_id = world.add_run(status="running")
    older = payload(world, run_id)
    world.simulator.state.set_status(run_id, "completed")
    newer = payload(world, run_id)
    url = webhook_url(world.connection_a)
    assert json.loads(older)["modified_at"] < json.loads(newer)["modified_at"]

    assert deliver(client, url, newer, signed(newer)).status_code == 200
    after_newer = runs_snapshot()
    response = deliver(client, url, older, signed(older))

    assert response.status_code == 200
    assert runs_snapshot() == after_newer
    assert Run.objects.get(run_id=run_id).status == "completed"


def test_a_newer_delivery_does_overwrite(world, client):
    run_id = world.add_run(status="running")
    url = webhook_url(world.connection_a)
    first = payload(world, run_id)
    assert deliver(client, url, first, signed(first)).status_code == 200
    world.simulator.state.set_status(run_id, "terminated", "Stopped by the operator")
    second = payload(world, run_id)

    assert deliver(client, url, second, signed(second)).status_code == 200

    run = Run.objects.get(run_id=run_id)
    assert (run.status, run.failure_reason) == ("terminated", "Stopped by the operator")


def test_lineage_is_kept(world, client, client_as):
    original = world.add_run(status="failed")
    client_as(world.operator).post(
        reverse("runs:run_retry", args=["acme", original]), {"seen_retries": "0"}
    )
    new = Run.objects.get(retried_from__run_id=original)
    world.simulator.state.set_status(new.run_id, "completed")
    body = payload(world, new.run_id)

    assert deliver(Client(), webhook_url(world.connection_a), body, signed(body)).status_code == 200

    new.refresh_from_db()
    assert new.status == "completed"
    assert new.retried_from.run_id == original and new.retried_by == world.operator


def run_reads(captured) -> int:
    """How many of the captured queries read the runs table."""
    table = Run._meta.db_table
    return sum(
        1
        for query in captured
        if query["sql"].lstrip().upper().startswith("SELECT") and table in query["sql"]
    )


def test_a_delivery_reads_the_cached_run_once_before_storing_it(world, client):
    """The cached run is read once to compare it with the delivery, and once
    more only to be written (update_or_create locks the row it writes): the
    service that stores it must not look it up a second time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = webhook_url(world.connection_a)
    run_id = world.add_run(status="running")
    older = payload(world, run_id)
    world.simulator.state.set_status(run_id, "failed")
    newer = payload(world, run_id)
    uncached = world.add_run(cache=False, status="completed")
    new = payload(world, uncached)

    reads = {}
    for name, body in [("updated", newer), ("same", newer), ("older", older), ("created", new)]:
        with CaptureQueriesContext(connection) as captured:
            assert deliver(client, url, body, signed(body)).status_code == 200
        reads[name] = run_reads(captured.captured_queries)

    assert reads == {"updated": 2, "same": 1, "older": 1, "created": 2}
    assert Run.objects.get(run_id=run_id).status == "failed"
    assert Run.objects.get(run_id=uncached).team == world.team_a


def test_skyverns_redeliveries_of_the_same_body_apply_once(world, client, caplog):
    """Skyvern re-delivers the same body and timestamp up to 3 times (it
    never saw our answer): each is answered 200 and changes nothing."""
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "completed")
    body = payload(world, run_id)
    headers = signed(body)
    url = webhook_url(world.connection_a)
    assert deliver(client, url, body, headers).status_code == 200
    applied = runs_snapshot()
    caplog.set_level(logging.INFO, logger=LOGGER)

    answers = [deliver(client, url, body, headers).status_code for _ in range(3)]

    assert answers == [200, 200, 200]
    assert runs_snapshot() == applied
    assert sum("unchanged" in r.getMessage() for r in caplog.records if r.name == LOGGER) == 3


def test_the_same_news_in_another_body_is_a_no_op(world, client):
    """Deduplicated by content: the same run, status, modified_at and attempt
    is the same news, even in a body that differs (a re-sent webhook carries
    newly signed links, Skyvern adds fields)."""
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed", "Carrier portal asked for a new password")
    body = payload(world, run_id)
    url = webhook_url(world.connection_a)
    assert deliver(client, url, body, signed(body)).status_code == 200
    applied = runs_snapshot()

    data = json.loads(body)
    data["recording_url"] = data["recording_url"] + "&resent=1"
    data["a_field_skyvern_added"] = True
    again = render.dumps(data)
    response = deliver(client, url, again, signed(again))

    assert response.status_code == 200 and response.json() == {"ok": True}
    assert runs_snapshot() == applied


def test_a_later_attempt_of_the_same_run_is_applied(world, client):
    """Skyvern's own automatic retry keeps the run id: a later attempt is news."""
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed")
    first = payload(world, run_id)
    url = webhook_url(world.connection_a)
    assert deliver(client, url, first, signed(first)).status_code == 200
    data = json.loads(first)
    data.update(attempt=2, status="completed", failure_reason=None)
    second = render.dumps(data)

    assert deliver(client, url, second, signed(second)).status_code == 200

    run = Run.objects.get(run_id=run_id)
    assert run.status == "completed" and run.raw["attempt"] == 2
    # ... and the first attempt's news, re-sent, doesn't bring "failed" back.
    assert deliver(client, url, first, signed(first)).status_code == 200
    assert Run.objects.get(run_id=run_id).status == "completed"


def test_a_replayed_old_body_cannot_roll_a_run_back(world, client):
    """Someone who captured a signed delivery of the run's first failure
    sends it again, with its own or a brand-new timestamp, after the run was
    updated: 200 (nothing to re-deliver), and the run stays as it is."""
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed", "Carrier portal asked for a new password")
    captured = payload(world, run_id)
    captured_headers = signed(captured)
    url = webhook_url(world.connection_a)
    assert deliver(client, url, captured, captured_headers).status_code == 200
    time.sleep(0.01)
    world.simulator.state.set_status(run_id, "completed")
    newer = payload(world, run_id)
    assert deliver(client, url, newer, signed(newer)).status_code == 200
    current = runs_snapshot()

    for headers in (captured_headers, signed(captured, timestamp=int(time.time()))):
        assert deliver(client, url, captured, headers).status_code == 200

    assert runs_snapshot() == current
    assert Run.objects.get(run_id=run_id).status == "completed"


def test_a_database_hiccup_asks_skyvern_to_redeliver(world, client, finished, monkeypatch, caplog):
    """A transient database error is not the delivery's fault: 503 with a
    short Retry-After (Skyvern re-delivers a 5xx), nothing stored, no refusal
    recorded; the re-delivery is applied."""
    from django.db import OperationalError

    from console.audit.models import AuditEntry

    real_store = store._write_detail

    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(store, "_write_detail", locked)
    body = payload(world, finished)
    headers = signed(body)
    url = webhook_url(world.connection_a)
    before = runs_snapshot()
    caplog.set_level(logging.INFO, logger=LOGGER)

    response = deliver(client, url, body, headers)

    assert response.status_code == 503
    assert int(response["Retry-After"]) <= 30  # Skyvern honours at most 30 s
    assert response.json() == {"ok": False}
    assert runs_snapshot() == before
    assert not AuditEntry.objects.filter(action="webhook_rejected").exists()
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "will re-deliver" in line and "OperationalError" in line

    monkeypatch.setattr(store, "_write_detail", real_store)
    assert deliver(client, url, body, headers).status_code == 200
    assert Run.objects.get(run_id=finished).status == "failed"


# --- refused deliveries on the Connections page -------------------------------------------


def connections_page(world, person=None):
    client = Client()
    client.force_login(person or world.admin)
    return client.get(reverse("teams:connection_list", args=["acme"]))


def test_refused_deliveries_show_on_the_connections_page(world, client, finished):
    body = payload(world, finished)
    url = webhook_url(world.connection_a)
    forged = sign(body, "a-guessed-key")
    deliver(
        client,
        url,
        body,
        {"x-skyvern-signature": forged},
    )
    deliver(client, url, b"<html>nope</html>", signed(b"<html>nope</html>"))
    deliver(client, url, body, {}, REMOTE_ADDR="203.0.113.7")

    page = connections_page(world)

    assert page.status_code == 200
    text = page_text(page)
    assert "Refused deliveries to" in text
    section = text[text.index("Refused deliveries to") :]
    # Newest first: when, the answer, why, from where.
    assert section.index("no signature") < section.index("the body is not JSON")
    assert section.index("the body is not JSON") < section.index("wrong signature")
    assert "203.0.113.7" in section and "127.0.0.1" in section and "401" in section
    html = page.content.decode()
    for secret in (KEY_A, forged, sign(body), "Carrier portal asked", "nope"):
        assert secret not in html


def test_only_the_newest_refusals_are_shown(world, client, finished):
    url = webhook_url(world.connection_a)
    for n in range(webhooks.REFUSALS_SHOWN + 3):
        deliver(client, url, b"{}", {"x-skyvern-signature": "0" * 64}, REMOTE_ADDR=f"192.0.2.{n}")

    text = page_text(connections_page(world))

    assert f"the last {webhooks.REFUSALS_SHOWN} at most" in text
    shown = re.findall(r"192\.0\.2\.(\d+)", text)
    assert shown == [str(n) for n in reversed(range(3, webhooks.REFUSALS_SHOWN + 3))]


def test_a_connection_without_refusals_says_so(world):
    assert "No refused delivery." in page_text(connections_page(world))


def test_refusals_show_only_for_their_own_connection_and_to_admins(world, client, finished):
    deliver(
        client,
        webhook_url(world.connection_b),
        b"{}",
        {"x-skyvern-signature": "0" * 64},
        REMOTE_ADDR="198.51.100.23",
    )
    assert "198.51.100.23" not in page_text(connections_page(world))
    deliver(
        client,
        webhook_url(world.connection_a),
        b"{}",
        {"x-skyvern-signature": "0" * 64},
        REMOTE_ADDR="198.51.100.24",
    )
    assert "198.51.100.24" in page_text(connections_page(world))
    for person in (world.viewer, world.operator, world.outsider):
        page = connections_page(world, person)
        assert "198.51.100.24" not in page.content.decode()


def test_an_unknown_token_leaves_no_row_anywhere(world, client, finished):
    """Anyone can send to a made-up token, as often as they like: a log line
    only, so no table fills up and no team's page shows it."""
    from console.audit.models import AuditEntry

    before = AuditEntry.objects.count()
    for n in range(5):
        url = reverse("skyvern_webhook", args=[f"made-up-token-{n}"])
        assert deliver(client, url, b"{}", {}, REMOTE_ADDR="192.0.2.99").status_code == 404

    assert AuditEntry.objects.count() == before
    assert "192.0.2.99" not in page_text(connections_page(world))


# --- secrets stay secret --------------------------------------------------------------


def test_the_key_signature_and_body_appear_in_no_log_and_no_response(
    world, client, finished, caplog, settings
):
    caplog.set_level(logging.DEBUG)
    body = payload(world, finished)
    url = webhook_url(world.connection_a)
    responses = [deliver(client, url, body, signed(body))]
    for build, _ in REJECTIONS.values():
        headers, sent = build(finished, body)
        responses.append(deliver(client, url, sent, headers))
    settings.WEBHOOK_MAX_BODY_BYTES = 10
    responses.append(deliver(client, url, body, signed(body)))
    responses.append(client.get(url))

    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {getattr(r, 'request', '')!r}" for r in caplog.records
    )
    secrets = [KEY_A, KEY_B, sign(body), sign(body, KEY_B), json.loads(body)["app_url"]]
    for secret in secrets:
        assert secret not in logged
        for response in responses:
            assert secret.encode() not in response.content
    assert len(rejections(caplog)) == len(REJECTIONS) + 2


# --- the webhook URL on the connections page --------------------------------------------


def test_admins_see_each_connections_webhook_url(world, client_as):
    page = client_as(world.admin).get(reverse("teams:connection_list", args=["acme"]))
    token = ConnectionSync.objects.get(connection=world.connection_a).webhook_token
    text = page_text(page)
    assert f"http://testserver/webhooks/skyvern/{token}/" in text
    assert "webhook_url" in text and "API key" in text
    assert sync_state_for(world.connection_b).webhook_token not in text


def test_viewers_and_operators_never_see_the_token(world, client_as):
    token = sync_state_for(world.connection_a).webhook_token
    for person in (world.viewer, world.operator):
        client = client_as(person)
        for url, headers in (
            (reverse("runs:run_list", args=["acme"]), {}),
            (reverse("sync:sync_status", args=["acme"]), {"HX-Request": "true"}),
            (reverse("teams:connection_list", args=["acme"]), {}),
        ):
            response = client.get(url, headers=headers)
            assert token not in response.content.decode(), (person, url)


# --- end to end: the simulator delivers to the live console ---------------------------------


def wait_for_deliveries(state, count: int, timeout: float = 10) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(state.deliveries()) < count:
        time.sleep(0.05)
    return state.deliveries()


def retry_through_the_console(world, client_as) -> tuple[str, Run]:
    original = world.add_run(status="failed")
    response = client_as(world.operator).post(
        reverse("runs:run_retry", args=["acme", original]), {"seen_retries": "0"}
    )
    assert response.status_code == 302
    new = Retry.objects.get(run__run_id=original).new_run
    assert new.status in ("created", "queued")
    return original, new


def test_the_simulator_delivers_to_the_console_when_a_retried_run_finishes(
    world, live_server, client_as
):
    """As Skyvern 1.0.56 on a New York host does it (the simulator's default):
    the timestamp 5 h ahead, and the console accepts it at the first try."""
    state = world.simulator.state
    url = live_server.url + webhook_url(world.connection_a)
    state.add_org(KEY_A, webhook_url=url)
    state.configure(queued_after=0, running_after=0.2, finished_after=0.6, failure_rate=1.0)
    original, new = retry_through_the_console(world, client_as)

    [delivery] = wait_for_deliveries(state, 1)

    assert (delivery.run_id, delivery.url, delivery.status_code) == (new.run_id, url, 200)
    assert abs(int(delivery.timestamp) - time.time() - NEW_YORK_SKEW) < 60
    new.refresh_from_db()
    assert new.status == "failed" and new.failure_reason
    assert new.app_url.endswith(f"/runs/{new.run_id}") and new.recording_url
    assert new.retried_from.run_id == original
    time.sleep(0.3)
    assert len(state.deliveries()) == 1  # accepted: not re-delivered


def test_a_delivery_the_console_answered_503_is_redelivered_and_applied_once(
    world, live_server, client_as, monkeypatch
):
    from django.db import OperationalError

    real_store = store._write_detail
    calls = []

    def store_unless_first(**kwargs):
        calls.append(kwargs["detail"].run_id)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return real_store(**kwargs)

    monkeypatch.setattr(store, "_write_detail", store_unless_first)
    state = world.simulator.state
    url = live_server.url + webhook_url(world.connection_a)
    state.add_org(KEY_A, webhook_url=url)
    # Re-deliveries 100 times sooner than Skyvern's (the console's Retry-After
    # of 5 s becomes 0.05 s), to keep the test fast.
    state.configure(
        queued_after=0,
        running_after=0.2,
        finished_after=0.6,
        failure_rate=0.0,
        webhook_backoff_scale=0.01,
    )
    _, new = retry_through_the_console(world, client_as)

    wait_for_deliveries(state, 2)
    time.sleep(0.5)  # time for more re-deliveries, if there were to be any

    deliveries = state.deliveries()
    assert [(d.attempt, d.status_code) for d in deliveries] == [(1, 503), (2, 200)]
    assert deliveries[0].timestamp == deliveries[1].timestamp
    assert calls == [new.run_id, new.run_id]  # stored once, by the re-delivery
    new.refresh_from_db()
    assert new.status == "completed"


def test_a_forged_delivery_shows_on_the_connections_page(world, live_server, finished):
    import requests

    body = payload(world, finished)
    url = live_server.url + webhook_url(world.connection_a)
    before = runs_snapshot()

    response = requests.post(
        url,
        data=body,
        headers={
            **signed(body, "sk-a-guessed-key"),
            "Content-Type": "application/json",
        },
        timeout=5,
    )

    assert response.status_code == 401  # final: Skyvern doesn't re-deliver a 401
    assert runs_snapshot() == before
    text = page_text(connections_page(world))
    section = text[text.index("Refused deliveries to") :]
    assert "wrong signature" in section and "127.0.0.1" in section


def test_an_admin_can_give_a_connection_a_new_webhook_url(world, client_as):
    """A leaked URL is replaced: deliveries to the old one are refused (404)."""
    old_token = sync_state_for(world.connection_a).webhook_token
    admin = client_as(world.admin)
    response = admin.post(
        reverse("sync:connection_new_webhook_url", args=["acme", world.connection_a.pk]),
        follow=True,
    )
    new_token = sync_state_for(world.connection_a).webhook_token
    assert new_token != old_token
    html = response.content.decode()
    assert new_token in html and old_token not in html
    assert "has a new webhook URL" in html
    old = admin.post(
        reverse("skyvern_webhook", args=[old_token]), b"{}", content_type="application/json"
    )
    assert old.status_code == 404
