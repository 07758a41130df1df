"""The audit pages: who sees which rows, filters, keyset pages and the CSV."""

import csv
import html
import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.audit import views
from console.audit.models import AuditEntry
from console.audit.services import audit_record
from console.bulk.tasks import bulk_retry_work
from tests.bulk.test_kinds import make_job
from tests.helpers import page_text
from tests.runs.test_actions import webhook_only_run
from tests.skyvern.test_client_cancel_webhooks_workflows import Receiver

HTMX = {"HX-Request": "true"}
TEAM_LOG = reverse("audit:audit_team_log", args=["acme"])
TEAM_CSV = reverse("audit:audit_team_export", args=["acme"])
ALL_LOG = reverse("audit:audit_log")
ALL_CSV = reverse("audit:audit_export")


@pytest.fixture
def log(world):
    """One row of each team's own, and one of no team (a failed sign-in)."""
    audit_record(
        action="run_retry", user=world.operator, team=world.team_a, target=("run", "wr_a1", "A")
    )
    audit_record(
        action="sync_now", user=world.outsider, team=world.team_b, target=("team", 2, "Globex")
    )
    audit_record(action="login_failed", username="mallory")
    return world


def csv_rows(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_team_admins_see_only_their_teams_rows(log, client_as):
    html = client_as(log.admin).get(TEAM_LOG).content.decode()
    assert "wr_a1" in html and "Globex" not in html and "mallory" not in html
    exported = csv_rows(client_as(log.admin).get(TEAM_CSV))
    assert [row["target_id"] for row in exported] == ["wr_a1"]


@pytest.mark.parametrize("person", ["viewer", "operator"])
def test_operators_and_viewers_are_refused(log, client_as, person):
    client = client_as(getattr(log, person))
    for url in (TEAM_LOG, TEAM_CSV, ALL_LOG, ALL_CSV):
        assert client.get(url).status_code == 403, url


def test_outsiders_do_not_find_the_team(log, client_as):
    client = client_as(log.outsider)
    assert client.get(TEAM_LOG).status_code == 404
    assert client.get(TEAM_CSV).status_code == 404


def test_team_admins_are_refused_the_whole_log(log, client_as):
    assert client_as(log.admin).get(ALL_LOG).status_code == 403


def test_superusers_see_everything_and_can_pick_a_team(log, client_as):
    client = client_as(log.superuser)
    html = client.get(ALL_LOG).content.decode()
    assert "wr_a1" in html and "Globex" in html and "mallory" in html
    html = client.get(ALL_LOG, {"team": "globex"}).content.decode()
    assert "wr_a1" not in html and "acme-operator" not in html
    assert {row["team"] for row in csv_rows(client.get(ALL_CSV))} == {"acme", "globex", ""}
    # And each team's own page too.
    assert client.get(TEAM_LOG).status_code == 200


def test_filters_by_person_action_target_and_dates(world, client_as):
    audit_record(
        action="run_retry",
        user=world.operator,
        team=world.team_a,
        target=("run", "wr_1", "Invoices"),
    )
    audit_record(action="sync_now", user=world.admin, team=world.team_a, target=world.team_a)
    audit_record(
        action="run_retry", user=world.admin, team=world.team_a, target=("run", "wr_2", "Proofs")
    )
    client = client_as(world.admin)

    def targets(**query):
        return [row["target_id"] for row in csv_rows(client.get(TEAM_CSV, query))]

    assert targets(person="acme-operator") == ["wr_1"]
    assert targets(action="run_retry") == ["wr_2", "wr_1"]
    assert targets(target="wr_2") == ["wr_2"]
    assert targets(target="invoi") == ["wr_1"]  # part of the label
    today = timezone.now().date()
    assert len(targets(since=today.isoformat(), until=today.isoformat())) == 3
    assert targets(since=(today + timedelta(days=1)).isoformat()) == []
    assert targets(until=(today - timedelta(days=1)).isoformat()) == []
    html = client.get(TEAM_LOG, {"person": "acme-operator"}).content.decode()
    assert "wr_1" in html and "wr_2" not in html
    # The export link keeps the filters.
    assert f"{TEAM_CSV}?person=acme-operator" in html


@pytest.mark.parametrize(
    "query",
    [
        {"action": "drop_tables"},
        {"since": "yesterday"},
        {"since": "2026-02-30"},
        {"since": "2026-05-02", "until": "2026-05-01"},
        {"before": "-1"},
        {"before": "99999999999999999999999"},
        {"before": "abc"},
        {"person": "x" * 500},
        {"team": "no-such-team"},
    ],
)
def test_odd_filters_are_ignored_or_explained_never_an_error(log, client_as, query):
    client = client_as(log.superuser)
    for url in (TEAM_LOG, ALL_LOG, TEAM_CSV, ALL_CSV):
        assert client.get(url, query).status_code == 200, (url, query)


def test_keyset_pages_newest_first_keep_the_filters(world, client_as, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    for n in range(7):
        audit_record(
            action="run_retry", user=world.admin, team=world.team_a, target=("run", f"wr_{n}", "x")
        )
    audit_record(action="sync_now", user=world.admin, team=world.team_a, target=world.team_a)
    client = client_as(world.admin)

    seen, url, pages = [], TEAM_LOG + "?action=run_retry", 0
    while url:
        response = client.get(url)
        pages += 1
        html = response.content.decode()
        seen += [e.target_id for e in response.context["entries"]]
        older = response.context["older_query"]
        url = f"{TEAM_LOG}?{older}" if older else None
        if older:
            assert "action=run_retry" in older
            assert f'href="{TEAM_LOG}?{older.replace("&", "&amp;")}"' in html
    assert seen == [f"wr_{n}" for n in range(6, -1, -1)]
    assert pages == 3
    # Rows added meanwhile don't shift the older pages (keyset, not offset).
    first_older = client.get(TEAM_LOG + "?action=run_retry").context["older_query"]
    audit_record(
        action="run_retry", user=world.admin, team=world.team_a, target=("run", "wr_new", "x")
    )
    again = client.get(f"{TEAM_LOG}?{first_older}").context["entries"]
    assert [e.target_id for e in again] == ["wr_3", "wr_2", "wr_1"]


def test_the_csv_neutralises_spreadsheet_formulas(world, client_as):
    audit_record(action="login_failed", username='=HYPERLINK("http://evil")', team=world.team_a)
    audit_record(action="connection_edit", team=world.team_a, target=("connection", 1, "+cmd|x"))
    audit_record(action="connection_edit", team=world.team_a, target=("connection", 2, "@SUM(1)"))
    exported = csv_rows(client_as(world.admin).get(TEAM_CSV))
    assert exported[2]["who"] == '\'=HYPERLINK("http://evil")'
    assert exported[1]["target_label"] == "'+cmd|x"
    assert exported[0]["target_label"] == "'@SUM(1)"
    assert list(exported[0]) == views.CSV_COLUMNS


def test_the_csv_is_not_cached(log, client_as):
    response = client_as(log.admin).get(TEAM_CSV)
    assert response["Cache-Control"] == "no-store"
    assert 'attachment; filename="audit-acme-' in response["Content-Disposition"]


def test_the_nav_links_to_the_log_for_admins_only(log, client_as):
    runs = reverse("runs:run_list", args=["acme"])
    assert TEAM_LOG in client_as(log.admin).get(runs).content.decode()
    assert TEAM_LOG not in client_as(log.operator).get(runs).content.decode()
    assert f'href="{ALL_LOG}"' not in client_as(log.admin).get(runs).content.decode()
    assert f'href="{ALL_LOG}"' in client_as(log.superuser).get(runs).content.decode()


def test_the_page_shows_where_from(world, client_as):
    client = client_as(world.admin)
    client.post(reverse("sync:sync_now", args=["acme"]), REMOTE_ADDR="203.0.113.9")
    html = client.get(TEAM_LOG).content.decode()
    assert "203.0.113.9" in html and "Sync started" in html
    assert AuditEntry.objects.filter(action="sync_now").count() == 1


def test_targets_link_to_their_pages_in_the_viewers_teams_only(world, client_as):
    """A run, a bulk job and a connection in the log open their pages, in the
    entry's team; another team's entries (the superuser's log) link only for
    superusers, and an entry of no team links nowhere."""
    audit_record(
        action="run_retry", user=world.operator, team=world.team_a, target=("run", "wr_a1", "A")
    )
    audit_record(
        action="bulk_job_create",
        user=world.operator,
        team=world.team_a,
        target=("bulk_job", 7, "Bulk retry #7"),
    )
    audit_record(
        action="connection_edit", user=world.admin, team=world.team_a, target=world.connection_a
    )
    audit_record(
        action="run_retry", user=world.outsider, team=world.team_b, target=("run", "wr_b1", "B")
    )
    audit_record(action="run_retry", user=world.operator, target=("run", "wr_x1", "no team"))
    run = reverse("runs:run_detail", args=["acme", "wr_a1"])
    job = reverse("bulk:bulk_job_detail", args=["acme", 7])
    connections = reverse("teams:connection_list", args=["acme"])
    other = reverse("runs:run_detail", args=["globex", "wr_b1"])

    html = client_as(world.admin).get(TEAM_LOG).content.decode()
    for url in (run, job, connections):
        assert f'<a href="{url}">' in html, url
    assert "wr_b1" not in html and other not in html

    html = client_as(world.superuser).get(ALL_LOG).content.decode()
    for url in (run, job, connections, other):
        assert f'<a href="{url}">' in html, url
    assert "wr_x1" in html and "/wr_x1/" not in html


# --- bulk jobs in their own words -------------------------------------------------------


@pytest.fixture
def fast_bulk(settings, monkeypatch):
    settings.BULK_RETRY_PER_SECOND = 1000
    settings.BULK_RETRY_WORKER_THREADS = 1
    # The job's follow pass asks Skyvern about runs it heard of a moment ago.
    monkeypatch.setattr("console.runs.services.REFRESH_AT_MOST_EVERY", timedelta(0))


def actions_read(response) -> list[str]:
    """The log's Action (or a history's What) column, top to bottom, as read."""
    cells = re.findall(
        r'<td data-label="(?:Action|What)">(.*?)</td>', response.content.decode(), re.S
    )
    return [html.unescape(cell).strip() for cell in cells]


def test_a_webhook_replay_job_is_named_so_in_the_log(world, client_as, fast_bulk):
    receiver = Receiver()
    try:
        run_ids = [webhook_only_run(world, receiver.url) for _ in range(2)]
        job = make_job(client_as(world.operator), run_ids, "replay_webhook")
        bulk_retry_work.call(job.pk)
    finally:
        receiver.close()

    page = client_as(world.admin).get(TEAM_LOG)
    actions = actions_read(page)
    assert actions[:2] == ["Bulk webhook replay finished", "Bulk webhook replay created"]
    assert not [action for action in actions if "retry" in action.lower()]
    text = page_text(page)
    assert f"bulk_job {job.pk} Bulk webhook replay #{job.pk}" in text
    assert "replay_webhook" not in text  # the kind is said in words, not as a code

    superuser = actions_read(client_as(world.superuser).get(ALL_LOG))
    assert "Bulk webhook replay created" in superuser


def test_a_cancel_job_is_named_so_in_the_log_and_on_its_page(world, client_as, fast_bulk):
    running = [world.add_run(status="running") for _ in range(2)]
    job = make_job(client_as(world.operator), running, "cancel")
    client_as(world.operator).post(reverse("bulk:bulk_job_pause", args=["acme", job.pk]))
    client_as(world.operator).post(reverse("bulk:bulk_job_resume", args=["acme", job.pk]))
    bulk_retry_work.call(job.pk)

    page = client_as(world.admin).get(TEAM_LOG)
    assert actions_read(page)[:4] == [
        "Bulk cancel finished",
        "Bulk cancel resumed",
        "Bulk cancel paused",
        "Bulk cancel created",
    ]
    assert f"Bulk cancel #{job.pk}" in page_text(page)

    history = client_as(world.viewer).get(reverse("bulk:bulk_job_detail", args=["acme", job.pk]))
    section = history.content.decode().split('id="h-audit-history"')[1]
    assert "Bulk cancel finished" in section and "Bulk cancel created" in section
    assert "Bulk retry" not in section


def test_rows_that_never_stored_their_jobs_kind_say_bulk_job(world, client_as):
    """Rows written before each row kept its job's kind don't guess it."""
    audit_record(
        action="bulk_job_pause",
        user=world.operator,
        team=world.team_a,
        target=("bulk_job", 3, "Bulk retry #3"),
    )
    audit_record(
        action="bulk_job_create",
        user=world.operator,
        team=world.team_a,
        target=("bulk_job", 3, "Bulk retry #3"),
        details={"kind": "a kind no longer made", "runs": 2},
    )
    page = client_as(world.admin).get(TEAM_LOG)
    assert actions_read(page) == ["Bulk job created", "Bulk job paused"]
    assert "kind: a kind no longer made" in page_text(page)


def test_the_action_filter_offers_bulk_job_actions_of_every_kind(world, client_as):
    audit_record(
        action="bulk_job_finish",
        team=world.team_a,
        target=("bulk_job", 4, "Bulk cancel #4"),
        details={"kind": "cancel"},
    )
    audit_record(
        action="bulk_job_finish",
        team=world.team_a,
        target=("bulk_job", 5, "Bulk retry #5"),
        details={"kind": "retry"},
    )
    page = client_as(world.admin).get(TEAM_LOG, {"action": "bulk_job_finish"})
    assert '<option value="bulk_job_finish" selected>Bulk job finished</option>' in (
        page.content.decode()
    )
    assert actions_read(page) == ["Bulk retry finished", "Bulk cancel finished"]
