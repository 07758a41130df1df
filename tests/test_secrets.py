"""A team's Skyvern API key never leaves its encrypted column.

With a known, random key stored for team A, every flow that exists today is
run — the pages, the run detail and its refresh, a retry and every way one
can fail, the connection pages and "Test connection", "Sync now" and a sync
(also a failing one), webhook deliveries accepted and rejected, sign-in
failures and the lockout, the error pages, the Django admin — and then the
key (or any 12-character piece of it) must be in:

- no response body and no response header (cookies included);
- no log record, with every logger at DEBUG;
- no database column but `Connection.api_key_encrypted` (every text and JSON
  column of every model is read; sessions are decoded first).

The audit log is covered twice: every flow's audit rows are columns like
any other (read above), and the "audit-log" flow runs the flows that record
the most (connections with keys typed, webhooks signed with the key, failed
sign-ins with the key as the password, retries) and then reads the audit
pages and the CSV exports, as the team's admin and as a superuser.

Bulk retry is not here yet.
"""

import hashlib
import hmac
import json
import logging
import secrets
import time
import traceback
from collections.abc import Callable

import pytest
from django.apps import apps
from django.contrib.sessions.models import Session
from django.db import models
from django.test import Client
from django.urls import reverse

from console.runs.models import Retry
from console.simulator import render
from console.sync.services import connection_sync, sync_state_for
from console.teams.models import Connection
from tests.conftest import PASSWORD

HTMX = {"HX-Request": "true"}
SECRET = "sk-live-" + secrets.token_urlsafe(24)
# Typed into the forms during the flows: they must not leak either.
TYPED_KEY = "sk-live-" + secrets.token_urlsafe(24)
REPLACED_KEY = "sk-live-" + secrets.token_urlsafe(24)
KEYS = (SECRET, TYPED_KEY, REPLACED_KEY)
# Anything that could pass for a piece of a key: 12 characters of the random part.
NEEDLES = sorted(
    {key for key in KEYS} | {key[8:][i : i + 12] for key in KEYS for i in range(len(key) - 8 - 11)}
)


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


class RecordingClient(Client):
    """The test client, keeping every response (redirects followed included)."""

    def __init__(self, seen: list, **kwargs):
        super().__init__(**kwargs)
        self.seen = seen

    def request(self, **request):
        response = super().request(**request)
        self.seen.append(response)
        return response


class Flows:
    """Clients per person, all recorded, and the world the flows act on."""

    def __init__(self, world):
        self.world = world
        self.responses: list = []

    def new_client(self, user=None, **kwargs) -> RecordingClient:
        """A new test client, signed in as `user` (anonymous without one),
        whose every response is recorded."""
        client = RecordingClient(self.responses, **kwargs)
        if user is not None:
            client.force_login(user)
        return client

    def run(self, **fields) -> str:
        return self.world.add_run(**fields)


@pytest.fixture
def known_key(world):
    """Team A's connection holds SECRET, a key that is its own Skyvern organisation."""
    world.simulator.state.add_org(SECRET, name="Acme (secret test)")
    world.connection_a.set_api_key(SECRET)
    world.connection_a.save()
    return world


# --- the flows ----------------------------------------------------------------------------


def pages(f: Flows):
    world = f.world
    failed = f.run(status="failed", failure_reason="Login failed")
    running = f.run(status="running")
    operator = f.new_client(world.operator)
    runs = reverse("runs:run_list", args=["acme"])
    operator.get(reverse("home"))
    operator.get(runs)
    operator.get(runs + "?status=failed&q=Login", headers={**HTMX, "HX-Target": "run-results"})
    operator.get(reverse("runs:run_updates", args=["acme"]) + "?since=0", headers=HTMX)
    operator.get(reverse("sync:sync_status", args=["acme"]), headers=HTMX)
    for run_id in (failed, running):
        operator.get(reverse("runs:run_detail", args=["acme", run_id]))
        operator.get(reverse("runs:run_detail_refresh", args=["acme", run_id]), headers=HTMX)
        operator.get(reverse("runs:run_card", args=["acme", run_id]), headers=HTMX)
        operator.get(reverse("runs:run_card", args=["acme", run_id]), follow=True)
    f.new_client(world.superuser).get(reverse("home"))


def detail_refresh_fails(f: Flows):
    run_id = f.run(status="running")
    operator = f.new_client(f.world.operator)
    url = reverse("runs:run_detail_refresh", args=["acme", run_id])
    for knobs in (
        {"error_rates": {500: 1.0}},
        {"error_rates": {403: 1.0}},
        {"malformed_json": 1.0},
    ):
        f.world.simulator.state.configure(**knobs)
        operator.get(url, headers=HTMX)
        f.world.simulator.state.configure(error_rates={}, malformed_json=0.0)


def retry_succeeds(f: Flows):
    operator = f.new_client(f.world.operator)
    first, second = f.run(status="failed"), f.run(status="terminated")
    operator.post(
        reverse("runs:run_retry", args=["acme", first]), {"seen_retries": "0"}, headers=HTMX
    )
    operator.post(
        reverse("runs:run_retry", args=["acme", first]),
        {"seen_retries": "1", "confirm_again": "yes"},
        headers=HTMX,
    )
    operator.post(
        reverse("runs:run_retry", args=["acme", second]),
        {"seen_retries": "0", "next": reverse("runs:run_list", args=["acme"])},
        follow=True,
    )


RETRY_FAILURES: dict[str, tuple[dict, str]] = {
    "not-retryable": ({}, "running"),
    "key-rejected": ({"error_rates": {403: 1.0}}, "failed"),
    "not-found": ({"error_rates": {404: 1.0}}, "failed"),
    "invalid": ({"error_rates": {422: 1.0}}, "failed"),
    "rate-limited": ({"rate_limit_per_second": 0.001, "rate_limit_retry_after": 7}, "twice"),
    "busy": ({"busy": 1.0}, "failed"),
    "server-error": ({"error_rates": {500: 1.0}}, "failed"),
    "bad-gateway": ({"error_rates": {502: 1.0}}, "failed"),
    "timeout": ({"hang_seconds": 1.5}, "failed"),
    "dropped": ({"drop_connection": 1.0}, "failed"),
    "malformed": ({"malformed_json": 1.0}, "failed"),
    "truncated": ({"truncate_body": 1.0}, "failed"),
    "redirect": ({"redirect_to": "http://127.0.0.1:9"}, "failed"),
}


def retry_fails(f: Flows, settings):
    settings.SKYVERN_READ_TIMEOUT = 0.5
    operator = f.new_client(f.world.operator)
    for knobs, kind in RETRY_FAILURES.values():
        run_ids = [f.run(status="running" if kind == "running" else "failed")]
        if kind == "twice":
            run_ids.append(f.run(status="failed"))
        plain = f.run(status="failed")
        f.world.simulator.state.configure(**knobs)
        for run_id in run_ids:
            url = reverse("runs:run_retry", args=["acme", run_id])
            operator.post(url, {"seen_retries": "0"}, headers=HTMX)
        # Plain form too: the error goes into a message on the next page.
        operator.post(
            reverse("runs:run_retry", args=["acme", plain]), {"seen_retries": "0"}, follow=True
        )
        f.world.simulator.state.configure(
            error_rates={},
            rate_limit_per_second=None,
            busy=0.0,
            hang_seconds=0,
            drop_connection=0.0,
            malformed_json=0.0,
            truncate_body=0.0,
            redirect_to=None,
        )
    # Every scenario really failed, in both forms ("not retryable" is refused by
    # the console itself for a running run, and its plain-form run is retried).
    errors = set(Retry.objects.exclude(state="retried").values_list("error", flat=True))
    assert Retry.objects.exclude(state="retried").count() >= 2 * (len(RETRY_FAILURES) - 1)
    assert len(errors) >= 8, errors


def connection_pages(f: Flows):
    world = f.world
    admin = f.new_client(world.admin)
    pk = world.connection_a.pk
    admin.get(reverse("teams:connection_list", args=["acme"]))
    admin.get(reverse("teams:connection_create", args=["acme"]))
    admin.get(reverse("teams:connection_edit", args=["acme", pk]))
    admin.get(reverse("teams:connection_replace_key", args=["acme", pk]))
    admin.get(reverse("teams:connection_delete", args=["acme", pk]))
    create = reverse("teams:connection_create", args=["acme"])
    # Keys are tested with Skyvern before they are saved: this one it knows.
    world.simulator.state.add_org(TYPED_KEY)
    # Refused forms are shown again: never with the key that was typed.
    admin.post(create, {"label": "Skyvern", "base_url": world.simulator.url, "api_key": TYPED_KEY})
    admin.post(
        create,
        {
            "label": "Creds",
            "base_url": f"https://me:{TYPED_KEY}@api.skyvern.com",
            "api_key": TYPED_KEY,
        },
    )
    admin.post(
        create, {"label": "Plain", "base_url": "http://api.skyvern.com", "api_key": TYPED_KEY}
    )
    admin.post(
        create,
        {"label": "Second", "base_url": world.simulator.url, "api_key": TYPED_KEY},
        follow=True,
    )
    second = Connection.objects.get(team=world.team_a, label="Second")
    admin.post(
        reverse("teams:connection_edit", args=["acme", pk]),
        {"label": "Skyvern main", "base_url": world.simulator.url},
        follow=True,
    )
    replace = reverse("teams:connection_replace_key", args=["acme", second.pk])
    admin.post(replace, {"api_key": "short"})
    admin.post(replace, {"api_key": REPLACED_KEY})  # Skyvern refuses it: not saved
    world.simulator.state.add_org(REPLACED_KEY)
    admin.post(replace, {"api_key": REPLACED_KEY}, follow=True)
    admin.get(reverse("teams:connection_delete", args=["acme", second.pk]))
    admin.post(reverse("teams:connection_delete", args=["acme", second.pk]), follow=True)


def connection_test(f: Flows):
    world = f.world
    admin = f.new_client(world.admin)
    url = reverse("teams:connection_test", args=["acme", world.connection_a.pk])
    admin.post(url, headers=HTMX)  # OK
    admin.post(url, follow=True)
    for knobs in (
        {"error_rates": {403: 1.0}},
        {"error_rates": {500: 1.0}},
        {"malformed_json": 1.0},
        {"redirect_to": "http://127.0.0.1:9"},
    ):
        world.simulator.state.configure(**knobs)
        admin.post(url, headers=HTMX)
        admin.post(url, follow=True)
        world.simulator.state.configure(error_rates={}, malformed_json=0.0, redirect_to=None)


def sync(f: Flows):
    world = f.world
    for status in ("failed", "running", "completed"):
        world.add_run(status=status, cache=False)
    operator = f.new_client(world.operator)
    operator.post(reverse("sync:sync_now", args=["acme"]), headers=HTMX)
    operator.post(reverse("sync:sync_now", args=["acme"]), follow=True)
    connection_sync(connection=world.connection_a, full=True)
    world.simulator.state.configure(error_rates={500: 1.0})
    connection_sync(connection=world.connection_a, full=True)
    world.simulator.state.configure(error_rates={})
    operator.get(reverse("sync:sync_status", args=["acme"]), headers=HTMX)
    operator.get(reverse("runs:run_list", args=["acme"]))


def webhooks(f: Flows):
    world = f.world
    run_id = f.run(status="running")
    world.simulator.state.set_status(run_id, "failed", "Carrier portal asked for a new password")
    body = render.webhook_payload(
        world.simulator.state.get_run(SECRET, run_id), world.simulator.links()
    )
    url = reverse("skyvern_webhook", args=[sync_state_for(world.connection_a).webhook_token])
    now = str(int(time.time()))

    def signed(payload: bytes, key: str = SECRET, timestamp: str = now) -> dict:
        signature = hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()
        return {"x-skyvern-signature": signature, "x-skyvern-timestamp": timestamp}

    skyvern = f.new_client()
    post = lambda u, b, h: skyvern.post(u, data=b, content_type="application/json", headers=h)  # noqa: E731
    post(url, body, signed(body))  # accepted
    post(url, body, signed(body))  # a repeat
    post(url, body, signed(body, key=TYPED_KEY))  # wrong key
    post(url, body, {"x-skyvern-signature": SECRET, "x-skyvern-timestamp": now})
    post(url, body, signed(body, timestamp="1000"))  # stale
    post(url, body, {})  # unsigned
    post(url, b"{not json", signed(b"{not json"))
    post(
        url,
        json.dumps({"run_id": "wr_nope"}).encode(),
        signed(json.dumps({"run_id": "wr_nope"}).encode()),
    )
    post(reverse("skyvern_webhook", args=["no-such-token"]), body, signed(body))
    skyvern.get(url)


def errors_and_sign_in(f: Flows, settings):
    world = f.world
    viewer = f.new_client(world.viewer)
    viewer.get(reverse("teams:connection_list", args=["acme"]))  # 403
    viewer.get(reverse("runs:run_list", args=["globex"]))  # 404
    viewer.get(reverse("runs:run_detail", args=["acme", "wr_404404"]))  # 404
    viewer.get("/no/such/page/")
    strict = f.new_client(world.operator, enforce_csrf_checks=True)
    strict.post(
        reverse("runs:run_retry", args=["acme", f.run(status="failed")]), {"seen_retries": "0"}
    )
    strict.post(reverse("teams:connection_create", args=["acme"]), {"api_key": TYPED_KEY})
    anonymous = f.new_client()
    anonymous.get(reverse("runs:run_list", args=["acme"]), follow=True)
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        anonymous.post(reverse("login"), {"username": world.admin.username, "password": SECRET})
    f.new_client().post(
        reverse("login"), {"username": world.viewer.username, "password": PASSWORD}, follow=True
    )


def django_admin(f: Flows):
    superuser = f.new_client(f.world.superuser)
    pk = f.world.connection_a.pk
    superuser.get(reverse("admin:teams_connection_changelist"))
    superuser.get(reverse("admin:teams_connection_change", args=[pk]))
    superuser.post(
        reverse("admin:teams_connection_change", args=[pk]),
        {"label": "Skyvern", "base_url": f.world.simulator.url},
        follow=True,
    )


def audit_log(f: Flows, settings):
    connection_pages(f)
    connection_test(f)
    webhooks(f)
    errors_and_sign_in(f, settings)
    retry_succeeds(f)
    f.new_client(f.world.operator).post(reverse("sync:sync_now", args=["acme"]))
    from console.audit.models import AuditEntry

    recorded = set(AuditEntry.objects.values_list("action", flat=True))
    assert {
        "connection_create",
        "connection_replace_key",
        "connection_test",
        "webhook_rejected",
        "login_failed",
        "lockout",
        "run_retry",
        "sync_now",
    } <= recorded, recorded
    admin, superuser = f.new_client(f.world.admin), f.new_client(f.world.superuser)
    for client, log, export in (
        (admin, reverse("audit:audit_team_log", args=["acme"]), None),
        (admin, None, reverse("audit:audit_team_export", args=["acme"])),
        (superuser, reverse("audit:audit_log"), reverse("audit:audit_export")),
    ):
        if log:
            assert client.get(log).status_code == 200
            client.get(log, {"target": "Skyvern"})
        if export:
            response = client.get(export)
            assert response.status_code == 200
            body = body_of(response)
            assert "connection_replace_key" in body
            response.streaming_content = [body.encode()]  # read again by the checks below
            client.get(export, {"action": "webhook_rejected"})


def bulk_job(f: Flows, settings):
    """Select, preview and confirm a bulk retry; run the worker with answers of
    every kind; then look at the job every way it can be looked at."""
    from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState
    from console.bulk.tasks import bulk_retry_work
    from console.runs.models import Run

    settings.SKYVERN_READ_TIMEOUT = 0.5
    world = f.world
    run_ids = [f.run(status="failed", failure_reason="Portal down") for _ in range(4)]
    picks = [str(pk) for pk in Run.objects.filter(run_id__in=run_ids).values_list("pk", flat=True)]
    operator = f.new_client(world.operator)
    preview = reverse("bulk:bulk_retry_preview", args=["acme"])
    operator.post(preview, {"scope": "ids", "run": picks})
    operator.post(
        reverse("bulk:bulk_retry_create", args=["acme"]),
        {"scope": "ids", "run": picks, "reason": "Portal outage overnight"},
        follow=True,
    )
    job = BulkRetryJob.objects.get()
    # Fixed dice: some items retried, some left unknown, the same every run.
    world.simulator.state.configure(
        error_rates={500: 0.5}, fault_endpoints=["retry"], fault_seed=7
    )
    bulk_retry_work.call(job.pk)
    world.simulator.state.configure(error_rates={})
    states = set(BulkRetryItem.objects.filter(job=job).values_list("state", flat=True))
    assert {ItemState.RETRIED, ItemState.UNKNOWN} <= states
    job_url = reverse("bulk:bulk_job_detail", args=["acme", job.pk])
    operator.get(job_url)
    operator.get(reverse("bulk:bulk_job_progress", args=["acme", job.pk]), headers=HTMX)
    operator.get(reverse("bulk:bulk_job_export", args=["acme", job.pk]))
    operator.get(reverse("bulk:bulk_job_list", args=["acme"]))
    for item in BulkRetryItem.objects.filter(job=job, state=ItemState.UNKNOWN):
        operator.post(reverse("bulk:bulk_item_check", args=["acme", job.pk, item.pk]), follow=True)
    operator.get(job_url)


FLOWS: dict[str, Callable] = {
    "bulk-job": bulk_job,
    "pages": pages,
    "detail-refresh-fails": detail_refresh_fails,
    "retry-succeeds": retry_succeeds,
    "retry-fails-every-way": retry_fails,
    "connection-pages": connection_pages,
    "test-connection": connection_test,
    "sync": sync,
    "webhooks": webhooks,
    "errors-and-sign-in": errors_and_sign_in,
    "django-admin": django_admin,
    "audit-log": audit_log,
}


# --- where the key must not be -------------------------------------------------------------


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def text_columns():
    """(model, field names) for every text-ish and JSON column of every model."""
    kinds = (models.CharField, models.TextField, models.JSONField)
    for model in apps.get_models():
        names = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, kinds) and not (model is Connection and f.name == "api_key_encrypted")
        ]
        if names:
            yield model, names


def database_leaks() -> list[str]:
    found = []
    for model, names in text_columns():
        for row in model._default_manager.values_list("pk", *names):
            for name, value in zip(names, row[1:], strict=True):
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                if hit := leaks(text or ""):
                    found.append(f"{model._meta.label}.{name} (pk {row[0]}): {hit[0]!r}")
    for session in Session.objects.all():
        if hit := leaks(json.dumps(session.get_decoded(), default=str)):
            found.append(f"session {session.pk}: {hit[0]!r}")
    return found


@pytest.fixture
def every_logger_at_debug(caplog):
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.parametrize("flow", list(FLOWS))
def test_the_key_is_in_no_response_log_or_other_column(
    flow, known_key, every_logger_at_debug, settings
):
    f = Flows(known_key)
    run_flow = FLOWS[flow]
    if run_flow.__code__.co_argcount == 2:
        run_flow(f, settings)
    else:
        run_flow(f)

    assert f.responses, "the flow made requests"
    problems = []
    for response in f.responses:
        request = response.request
        where = (
            f"{request.get('REQUEST_METHOD')} {request.get('PATH_INFO')} → {response.status_code}"
        )
        if hit := leaks(body_of(response)):
            problems.append(f"body of {where}: {hit[0]!r}")
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        headers += "\n" + response.cookies.output()
        if hit := leaks(headers):
            problems.append(f"headers of {where}: {hit[0]!r}")
    for record in every_logger_at_debug.records:
        text = " ".join(
            [record.getMessage(), repr(record.args), record.exc_text or "", str(record.__dict__)]
        )
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        if hit := leaks(text):
            problems.append(f"log record {record.name} {record.levelname}: {hit[0]!r}")
    problems += database_leaks()
    assert not problems, "The API key leaked:\n" + "\n".join(problems)


def test_the_encrypted_column_holds_no_plain_key(known_key):
    """The one column allowed to hold the key holds it only encrypted."""
    for value in Connection.objects.values_list("api_key_encrypted", flat=True):
        assert not leaks(value)
    assert Connection.objects.get(pk=known_key.connection_a.pk).api_key() == SECRET


def test_the_needles_would_be_found():
    """The checks above can fail: a key or a piece of one is spotted."""
    assert leaks(f"x-api-key: {SECRET}")
    assert leaks(f"…{SECRET[10:24]}…")
    assert not leaks("••••" + SECRET[-4:])
