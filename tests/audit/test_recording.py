"""The audit log records each action exactly once, with who, team, target,
outcome, address and browser — and never a key or a password.

Every flow is driven through its view (or the worker task), as a person or
Skyvern would; the sign-in that `client_as` does is itself a `login` row, so
counts leave those out unless the test is about signing in.
"""

import hashlib
import hmac
import time

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import reverse

from console.audit.admin import AuditEntryAdmin
from console.audit.models import AppendOnly, AuditEntry
from console.audit.services import audit_entries_for, audit_record
from console.bulk.models import BulkRetryJob, ItemState
from console.bulk.tasks import bulk_retry_work
from console.runs.models import Run
from console.sync.services import sync_state_for
from console.teams.models import Connection, Membership
from tests.conftest import KEY_A, PASSWORD, make_user

HTMX = {"HX-Request": "true"}
BROWSER = "Mozilla/5.0 (audit test)"
ADDRESS = "198.51.100.23"
NEW_KEY = "sk-audit-new-key-0123456789-WXYZ"


@pytest.fixture(autouse=True)
def fast_bulk(settings):
    settings.BULK_RETRY_PER_SECOND = 1000
    settings.BULK_RETRY_WORKER_THREADS = 1


def rows(action=None):
    entries = AuditEntry.objects.exclude(action__in=["login", "logout"])
    return entries.filter(action=action) if action else entries


def only_row(action) -> AuditEntry:
    """The one row of `action`, and no other row besides sign-ins."""
    found = list(rows())
    assert [e.action for e in found] == [action], [(e.action, e.details) for e in found]
    return found[0]


def browser_client(user) -> Client:
    """The test client, signed in as `user`, sending as a browser would
    (its user agent, from ADDRESS)."""
    client = Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=ADDRESS)
    client.force_login(user)
    return client


# --- retries --------------------------------------------------------------------------------


def test_a_retry_is_one_row_with_who_where_and_the_new_run(world):
    run_id = world.add_run(status="failed")
    client = browser_client(world.operator)

    response = client.post(
        reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"}, headers=HTMX
    )

    assert response.status_code == 200
    entry = only_row("run_retry")
    new_run = Run.objects.get(retried_from__run_id=run_id)
    assert (entry.user, entry.username) == (world.operator, "acme-operator")
    assert entry.team == world.team_a
    assert (entry.target_type, entry.target_id) == ("run", run_id)
    assert entry.outcome == "ok" and entry.details["new_run"] == new_run.run_id
    assert set(entry.details) == {"number", "connection", "new_run"}
    assert (entry.ip_address, entry.user_agent) == (ADDRESS, BROWSER)

    # A second click with the same view of the run sends nothing: no row.
    client.post(
        reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"}, headers=HTMX
    )
    assert rows().count() == 1


def test_a_failed_retry_is_one_row_with_its_outcome(world):
    run_id = world.add_run(status="failed")
    world.simulator.state.configure(error_rates={422: 1.0})

    browser_client(world.operator).post(
        reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"}, headers=HTMX
    )

    entry = only_row("run_retry_failed")
    assert entry.outcome == "failed" and entry.details["error"]
    assert set(entry.details) == {"number", "connection", "error"}
    assert entry.target_id == run_id and entry.team == world.team_a


def test_a_refused_retry_is_not_recorded(world):
    run_id = world.add_run(status="running")
    browser_client(world.operator).post(
        reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"}, headers=HTMX
    )
    assert not rows().exists()


# --- bulk retry -----------------------------------------------------------------------------


def job_url(job, name):
    return reverse(f"bulk:{name}", args=["acme", job.pk])


def create_job(world, client, run_ids) -> BulkRetryJob:
    pks = list(Run.objects.filter(run_id__in=run_ids).values_list("pk", flat=True))
    response = client.post(
        reverse("bulk:bulk_retry_create", args=["acme"]),
        {"scope": "ids", "run": pks, "reason": "Portal down overnight"},
    )
    assert response.status_code == 303, response.content.decode()[:500]
    return BulkRetryJob.objects.order_by("-pk").first()


def test_a_bulk_job_created_paused_resumed_canceled_is_one_row_each(world):
    run_ids = [world.add_run(status="failed") for _ in range(3)]
    client = browser_client(world.operator)

    job = create_job(world, client, run_ids)
    entry = only_row("bulk_job_create")
    assert (entry.target_type, entry.target_id) == ("bulk_job", str(job.pk))
    assert entry.details["runs"] == 3 and entry.details["reason"] == "Portal down overnight"
    assert (entry.ip_address, entry.user_agent) == (ADDRESS, BROWSER)

    for verb in ("pause", "resume", "cancel"):
        assert client.post(job_url(job, f"bulk_job_{verb}"), {"confirm": "yes"}).status_code == 303
    assert [e.action for e in rows().order_by("id")] == [
        "bulk_job_create",
        "bulk_job_pause",
        "bulk_job_resume",
        "bulk_job_cancel",
    ]
    assert {e.user for e in rows()} == {world.operator}
    # A refused step (pausing a canceled job) is not an action.
    client.post(job_url(job, "bulk_job_pause"))
    assert rows().count() == 4


def test_a_bulk_job_finishing_is_one_row(world):
    run_ids = [world.add_run(status="failed") for _ in range(2)]
    job = create_job(world, browser_client(world.operator), run_ids)

    bulk_retry_work.call(job.pk)
    bulk_retry_work.call(job.pk)  # a second pass finds nothing to do

    entry = rows("bulk_job_finish").get()
    assert entry.user is None and entry.team == world.team_a
    assert entry.details["retried"] == 2
    # Item sends are the job's, not single retries.
    assert not rows("run_retry").exists()


def test_check_and_retry_anyway_on_an_unknown_item_are_one_row_each(world):
    run_id = world.add_run(status="failed")
    client = browser_client(world.operator)
    job = create_job(world, client, [run_id])
    state = world.simulator.state
    state.configure(drop_connection=1.0, apply_then_fail=False)
    bulk_retry_work.call(job.pk)
    state.configure(drop_connection=0.0, apply_then_fail=True)
    item = job.items.get()
    assert item.state == ItemState.UNKNOWN
    before = rows().count()

    client.post(reverse("bulk:bulk_item_check", args=["acme", job.pk, item.pk]))
    check = rows("bulk_item_check").get()
    assert (check.target_type, check.target_id) == ("run", run_id)
    assert check.details["job"] == job.pk and check.outcome == "unknown"

    client.post(
        reverse("bulk:bulk_item_retry_anyway", args=["acme", job.pk, item.pk]), {"confirm": "on"}
    )
    anyway = rows("bulk_item_retry_anyway").get()
    assert anyway.details["job"] == job.pk and anyway.user == world.operator
    assert rows().count() == before + 2


# --- sync, connections ----------------------------------------------------------------------


def test_sync_now_is_one_row(world):
    browser_client(world.operator).post(reverse("sync:sync_now", args=["acme"]), headers=HTMX)
    entry = only_row("sync_now")
    assert entry.team == world.team_a and entry.details["started"] == ["Skyvern"]


def test_each_connection_action_is_one_row_and_never_the_key(world):
    client = browser_client(world.admin)
    create = reverse("teams:connection_create", args=["acme"])
    # Keys are tested with Skyvern before they are saved: these it knows.
    world.simulator.state.add_org(NEW_KEY)
    world.simulator.state.add_key(NEW_KEY, NEW_KEY + "2")
    client.post(create, {"label": "Second", "base_url": world.simulator.url, "api_key": NEW_KEY})
    second = Connection.objects.get(label="Second")
    client.post(
        reverse("teams:connection_edit", args=["acme", second.pk]),
        {"label": "Backup", "base_url": world.simulator.url},
    )
    client.post(
        reverse("teams:connection_replace_key", args=["acme", second.pk]),
        {"api_key": NEW_KEY + "2"},
    )
    client.post(reverse("teams:connection_test", args=["acme", world.connection_a.pk]))
    client.post(reverse("teams:connection_delete", args=["acme", second.pk]))

    entries = list(rows().order_by("id"))
    assert [e.action for e in entries] == [
        "connection_create",
        "connection_edit",
        "connection_replace_key",
        "connection_test",
        "connection_delete",
    ]
    created, edited, replaced, tested, deleted = entries
    assert created.target_label == "Second" and created.details["key"] == "••••WXYZ"
    assert edited.details["changes"]["label"] == {"from": "Second", "to": "Backup"}
    assert replaced.details["key"] == "••••XYZ2"
    assert tested.outcome == "ok" and tested.target_id == str(world.connection_a.pk)
    assert deleted.target_label == "Backup" and deleted.target_id == str(second.pk)
    for entry in entries:
        text = str(entry.details) + entry.target_label
        assert NEW_KEY not in text and NEW_KEY[8:20] not in text and KEY_A not in text


def test_a_failed_connection_test_says_so(world):
    world.simulator.state.configure(error_rates={403: 1.0})
    browser_client(world.admin).post(
        reverse("teams:connection_test", args=["acme", world.connection_a.pk])
    )
    entry = only_row("connection_test")
    assert entry.outcome == "failed" and "rejected" in entry.details["message"]


# --- webhooks -------------------------------------------------------------------------------


def test_each_rejected_webhook_is_one_row_with_why(world):
    url = reverse("skyvern_webhook", args=[sync_state_for(world.connection_a).webhook_token])
    body = b'{"run_id": "wr_1"}'
    skyvern = Client(REMOTE_ADDR=ADDRESS)
    wrong = hmac.new(b"not the key", body, hashlib.sha256).hexdigest()
    headers = {"x-skyvern-signature": wrong, "x-skyvern-timestamp": str(int(time.time()))}

    skyvern.post(url, body, content_type="application/json", headers=headers)
    entry = only_row("webhook_rejected")
    assert entry.details == {"status": 401, "reason": "wrong signature"}
    assert entry.team == world.team_a and entry.target_label == "Skyvern"
    assert entry.user is None and entry.ip_address == ADDRESS and entry.outcome == "refused"

    # A delivery to no connection of ours could come from anyone, any number of
    # times: it is logged, but adds no audit row.
    skyvern.post(reverse("skyvern_webhook", args=["no-such-token"]), body, content_type="x/y")
    assert rows().count() == 1


# --- signing in and out ---------------------------------------------------------------------


def sign_in(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_sign_in_and_sign_out_are_one_row_each(world):
    client = Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=ADDRESS)
    assert sign_in(client, "acme-viewer", PASSWORD).status_code == 302
    client.post(reverse("logout"))

    entries = list(AuditEntry.objects.order_by("id"))
    assert [(e.action, e.username) for e in entries] == [
        ("login", "acme-viewer"),
        ("logout", "acme-viewer"),
    ]
    assert all(e.ip_address == ADDRESS and e.user_agent == BROWSER for e in entries)
    assert entries[0].user == world.viewer and entries[0].team is None


def test_a_failed_sign_in_is_one_row_without_the_password(world):
    client = Client(REMOTE_ADDR=ADDRESS)
    sign_in(client, "acme-viewer", "my-secret-guess")

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.user) == ("login_failed", "acme-viewer", None)
    assert "my-secret-guess" not in str(entry.details)
    assert entry.ip_address == ADDRESS


def test_a_lockout_is_one_row_however_often_they_try(world):
    client = Client(REMOTE_ADDR=ADDRESS)
    limit = django_settings.AXES_FAILURE_LIMIT
    responses = [sign_in(client, "acme-viewer", "wrong") for _ in range(limit)]
    assert responses[-1].status_code == 429
    sign_in(client, "acme-viewer", "wrong again")
    sign_in(client, "acme-viewer", PASSWORD)  # right, but locked

    assert AuditEntry.objects.filter(action="lockout").count() == 1
    lockout = AuditEntry.objects.get(action="lockout")
    assert lockout.username == "acme-viewer" and lockout.ip_address == ADDRESS
    assert AuditEntry.objects.filter(action="login_failed").count() == limit + 2
    assert not AuditEntry.objects.filter(action="login").exists()


# --- members --------------------------------------------------------------------------------


def test_each_member_action_is_one_row(world):
    client = browser_client(world.admin)
    make_user("newcomer")
    members = reverse("members:member_list", args=["acme"])
    client.post(members + "add/", {"login": "newcomer", "role": "viewer"})
    joined = Membership.objects.get(user__username="newcomer")
    client.post(
        reverse("members:member_role_change", args=["acme", joined.pk]), {"role": "operator"}
    )
    client.post(reverse("members:member_remove", args=["acme", joined.pk]))
    client.post(
        reverse("members:member_invite", args=["acme"]),
        {"username": "fresh", "email": "fresh@example.com", "role": "viewer"},
    )

    entries = list(rows().order_by("id"))
    assert [(e.action, e.target_label) for e in entries] == [
        ("member_add", "newcomer"),
        ("member_role_change", "newcomer"),
        ("member_remove", "newcomer"),
        ("member_invite", "fresh"),
    ]
    assert entries[1].details == {"from": "viewer", "to": "operator"}
    assert all(e.team == world.team_a and e.user == world.admin for e in entries)
    # The one-time link is a secret too: not in the log.
    assert "token" not in str(entries[3].details)


# --- append-only ------------------------------------------------------------------------------


def test_entries_cannot_be_changed_or_removed(world):
    entry = audit_record(action="sync_now", user=world.admin, team=world.team_a)
    entry.action = "login"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        AuditEntry.objects.filter(pk=entry.pk).update(action="login")
    with pytest.raises(AppendOnly):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "sync_now"


def test_the_admin_only_reads(world):
    model_admin = AuditEntryAdmin(AuditEntry, admin.site)
    request = RequestFactory().get("/")
    request.user = world.superuser
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert model_admin.has_view_permission(request)


def test_a_deleted_person_stays_in_the_log_by_name(world):
    audit_record(action="sync_now", user=world.viewer, team=world.team_a)
    world.viewer.delete()
    entry = AuditEntry.objects.get(action="sync_now")
    assert entry.user is None and entry.username == "acme-viewer"


def test_secret_details_are_dropped(world):
    entry = audit_record(
        action="connection_edit",
        team=world.team_a,
        details={"api_key": KEY_A, "password": "x", "nested": {"token": "t"}, "label": "ok"},
    )
    assert entry.details == {"nested": {}, "label": "ok"}


# --- shown on the run and job pages ------------------------------------------------------------


def test_the_run_page_shows_its_history(world, client_as):
    run_id = world.add_run(status="failed")
    client = client_as(world.operator)
    client.post(reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"})
    other = world.add_run(status="failed")

    page = client_as(world.viewer).get(reverse("runs:run_detail", args=["acme", run_id]))
    html = page.content.decode()
    assert "History" in html and "Run retried" in html and "acme-operator" in html
    assert ADDRESS not in html  # addresses are for the audit log
    assert audit_entries_for(Run.objects.get(run_id=other)) == []


def test_the_job_page_shows_its_history(world, client_as):
    run_id = world.add_run(status="failed")
    job = create_job(world, client_as(world.operator), [run_id])
    client_as(world.operator).post(job_url(job, "bulk_job_pause"))

    html = client_as(world.viewer).get(job_url(job, "bulk_job_detail")).content.decode()
    section = html.split('id="h-audit-history"')[1]
    assert "Bulk retry created" in section and "Bulk retry paused" in section
    assert [e.action for e in audit_entries_for(job)] == ["bulk_job_pause", "bulk_job_create"]


def test_a_team_b_job_with_the_same_number_is_not_in_team_as_history(world):
    audit_record(
        action="bulk_job_pause", team=world.team_b, target=("bulk_job", 1, "Bulk retry #1")
    )
    job = BulkRetryJob(pk=1, team=world.team_a)
    assert audit_entries_for(job) == []
