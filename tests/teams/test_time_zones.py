"""Times read in the person's own zone, labelled with it; the zone a first
sign-in brings from the browser; CSV exports that stay ISO 8601 UTC."""

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from console import timefmt
from console.audit.services import audit_record
from console.bulk.models import BulkRetryJob
from console.bulk.services import bulk_retry_create
from console.runs.models import Run
from console.teams.models import AccountSettings
from tests.conftest import PASSWORD
from tests.helpers import page_text

NEW_YORK = ZoneInfo("America/New_York")
# New York's clocks go back at 02:00 EDT on 2026-11-01 (06:00 UTC): 01:30
# happens twice, once in EDT (UTC-4) and once in EST (UTC-5).
BEFORE_CHANGE = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
AFTER_CHANGE = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST


def in_zone(user, name):
    AccountSettings.objects.update_or_create(user=user, defaults={"time_zone": name})


def cached_run(world, run_id, *, created, finished=None, synced=None):
    return Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id=run_id,
        status="failed" if finished else "running",
        workflow_permanent_id="wpid_1",
        workflow_title="Invoices",
        created_at=created,
        finished_at=finished,
        synced_at=synced or created,
    )


# --- the formatter ------------------------------------------------------------------------


def test_a_moment_is_shown_in_the_zone_and_labelled_with_it():
    assert timefmt.shown(BEFORE_CHANGE, zone=NEW_YORK) == "Nov 1, 01:30 EDT"
    assert timefmt.shown(AFTER_CHANGE, zone=NEW_YORK) == "Nov 1, 01:30 EST"
    assert timefmt.shown(AFTER_CHANGE, "full", zone=NEW_YORK) == "2026-11-01 01:30:00 EST"
    assert timefmt.shown(AFTER_CHANGE, zone=ZoneInfo("Europe/Berlin")) == "Nov 1, 07:30 CET"
    assert timefmt.shown(AFTER_CHANGE, zone=UTC) == "Nov 1, 06:30 UTC"
    # A zone without an abbreviation is named by its offset.
    assert timefmt.shown(AFTER_CHANGE, zone=ZoneInfo("Asia/Dubai")) == "Nov 1, 10:30 UTC+04"
    assert timefmt.shown(AFTER_CHANGE, zone=ZoneInfo("Asia/Kathmandu")).endswith("UTC+05:45")
    assert timefmt.full(BEFORE_CHANGE, NEW_YORK) == "2026-11-01T01:30:00-04:00 America/New_York"
    assert timefmt.full(AFTER_CHANGE, NEW_YORK) == "2026-11-01T01:30:00-05:00 America/New_York"


def test_relative_times_are_coarse_and_say_which_way():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert timefmt.relative(now - timedelta(seconds=20), now) == "just now"
    assert timefmt.relative(now - timedelta(minutes=12, seconds=40), now) == "12 min ago"
    assert timefmt.relative(now + timedelta(minutes=5, seconds=1), now) == "in 5 min"
    assert timefmt.relative(now - timedelta(hours=3, minutes=59), now) == "3 h ago"
    assert timefmt.relative(now - timedelta(days=4), now) == "4 days ago"


def test_the_time_element_keeps_the_utc_instant_and_escapes_nothing_from_outside():
    html = timefmt.time_html(AFTER_CHANGE, zone=NEW_YORK, live=True)
    assert html == (
        '<time datetime="2026-11-01T06:30:00+00:00" '
        'title="2026-11-01T01:30:00-05:00 America/New_York" data-relative="">'
        "Nov 1, 01:30 EST</time>"
    )


# --- pages ---------------------------------------------------------------------------------


def test_a_new_york_person_sees_both_sides_of_the_clock_change_on_the_runs_page(world, client_as):
    in_zone(world.viewer, "America/New_York")
    cached_run(
        world, "wr_before", created=BEFORE_CHANGE, finished=BEFORE_CHANGE + timedelta(minutes=2)
    )
    cached_run(
        world, "wr_after", created=AFTER_CHANGE, finished=AFTER_CHANGE + timedelta(minutes=2)
    )

    response = client_as(world.viewer).get(reverse("runs:run_list", args=["acme"]))

    html = response.content.decode()
    text = page_text(response)
    assert "Created Nov 1, 01:30 EDT · finished Nov 1, 01:32 EDT" in text
    assert "Created Nov 1, 01:30 EST · finished Nov 1, 01:32 EST" in text
    assert 'title="2026-11-01T01:30:00-04:00 America/New_York"' in html
    assert 'title="2026-11-01T01:30:00-05:00 America/New_York"' in html
    assert " UTC" not in text
    # The filters say which zone a typed time is in.
    assert '<small class="zone-note">(America/New_York)</small>' in html


def test_cards_are_cached_per_zone(world, client_as):
    cached_run(world, "wr_after", created=AFTER_CHANGE, finished=AFTER_CHANGE)
    client = client_as(world.viewer)
    runs = reverse("runs:run_list", args=["acme"])
    assert "Created Nov 1, 06:30 UTC" in page_text(client.get(runs))

    client.post(reverse("twofactor:time_zone_change"), {"time_zone": "America/New_York"})

    assert "Created Nov 1, 01:30 EST" in page_text(client.get(runs))


def test_the_run_page_labels_its_times(world, client_as):
    in_zone(world.viewer, "America/New_York")
    cached_run(world, "wr_after", created=AFTER_CHANGE, finished=AFTER_CHANGE, synced=AFTER_CHANGE)

    response = client_as(world.viewer).get(reverse("runs:run_detail", args=["acme", "wr_after"]))

    text = page_text(response)
    assert "2026-11-01 01:30:00 EST" in text  # the cached copy's time
    assert " UTC" not in text


def test_the_job_pages_label_their_times(world, client_as):
    in_zone(world.operator, "America/New_York")
    world.add_run(status="failed")
    job = bulk_retry_create(
        team=world.team_a,
        user=world.operator,
        runs=Run.objects.filter(team=world.team_a),
        reason="Portal outage overnight",
        include_already_retried=False,
        max_steps_override=None,
        selection={"run_ids": []},
    )
    BulkRetryJob.objects.filter(pk=job.pk).update(created_at=BEFORE_CHANGE)
    client = client_as(world.operator)

    detail = page_text(client.get(reverse("bulk:bulk_job_detail", args=["acme", job.pk])))
    listed = page_text(client.get(reverse("bulk:bulk_job_list", args=["acme"])))

    assert "Nov 1, 01:30 EDT" in detail
    assert "Nov 1, 01:30 EDT" in listed
    # Only the customer's ticket summary says UTC: their zone is not known.
    assert " UTC" not in detail.replace("On 2026-11-01 05:30 UTC,", "")
    assert " UTC" not in listed


def test_the_audit_log_labels_its_times_and_its_csv_stays_utc(world, client_as, monkeypatch):
    in_zone(world.admin, "America/New_York")
    monkeypatch.setattr("console.audit.services.timezone.now", lambda: AFTER_CHANGE)
    audit_record(
        action="run_retry", user=world.operator, team=world.team_a, target=("run", "wr_a1", "A")
    )
    monkeypatch.undo()
    client = client_as(world.admin)

    page = page_text(client.get(reverse("audit:audit_team_log", args=["acme"])))
    assert "2026-11-01 01:30:00 EST" in page
    assert "(UTC)" not in page

    exported = client.get(reverse("audit:audit_team_export", args=["acme"]))
    body = b"".join(exported.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [row["when"] for row in rows if row["target_id"] == "wr_a1"] == [
        "2026-11-01T06:30:00+00:00"
    ]


def test_the_bulk_csv_stays_iso_utc_for_a_person_elsewhere(world, client_as):
    in_zone(world.operator, "Asia/Tokyo")
    world.add_run(status="failed")
    job = bulk_retry_create(
        team=world.team_a,
        user=world.operator,
        runs=Run.objects.filter(team=world.team_a),
        reason="Portal outage overnight",
        include_already_retried=False,
        max_steps_override=None,
        selection={"run_ids": []},
    )
    job.items.update(sent_at=BEFORE_CHANGE, finished_at=AFTER_CHANGE)

    response = client_as(world.operator).get(reverse("bulk:bulk_job_export", args=["acme", job.pk]))

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(row["sent_at"], row["finished_at"]) for row in rows] == [
        ("2026-11-01T05:30:00+00:00", "2026-11-01T06:30:00+00:00")
    ]


# --- the zone a first sign-in brings -----------------------------------------------------


def sign_in(client, user, **extra):
    return client.post(
        reverse("login"), {"username": user.get_username(), "password": PASSWORD, **extra}
    )


def test_the_first_sign_in_keeps_the_browsers_zone(world, client):
    response = sign_in(client, world.viewer, browser_time_zone="Europe/Berlin")

    assert response.status_code == 302
    assert AccountSettings.objects.get(user=world.viewer).time_zone == "Europe/Berlin"
    cached_run(world, "wr_after", created=AFTER_CHANGE, finished=AFTER_CHANGE)
    text = page_text(client.get(reverse("runs:run_list", args=["acme"])))
    assert "Created Nov 1, 07:30 CET" in text


def test_a_saved_zone_is_not_overridden_by_the_browser(world, client):
    in_zone(world.viewer, "UTC")  # chosen on the account page

    sign_in(client, world.viewer, browser_time_zone="Europe/Berlin")

    assert AccountSettings.objects.get(user=world.viewer).time_zone == "UTC"


@pytest.mark.parametrize("sent", ["", "Mars/Olympus", "../../etc/passwd"])
def test_without_a_real_zone_from_the_browser_it_stays_utc(world, client, sent):
    sign_in(client, world.viewer, browser_time_zone=sent)

    assert not AccountSettings.objects.filter(user=world.viewer).exists()
    assert timezone.get_current_timezone_name() == "UTC"


def test_the_sign_in_page_has_the_field_console_js_fills(client, db):
    html = client.get(reverse("login")).content.decode()
    assert '<input type="hidden" name="browser_time_zone" value="" data-browser-time-zone>' in html
