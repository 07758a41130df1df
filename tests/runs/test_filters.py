"""The runs page's filters a person thinks in (issue 13.1): "last hour" and
custom date-and-time ranges on created and finished time, in the viewer's own
time zone; "not yet retried", "retried and failed again"; the workflow chosen
from the team's. Each in the URL, in the page's filter summary, and refused
with a clear message (never a 500) when it is not one."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from console.runs.listing import RunFilterForm, filtered, moment_parse, team_workflows
from console.runs.models import Retry, RetryState, Run
from console.teams.models import AccountSettings
from tests.helpers import page_text

HTMX_RESULTS = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-results"}
BERLIN = ZoneInfo("Europe/Berlin")


def make_run(
    world,
    name,
    *,
    created,
    finished=None,
    status="failed",
    workflow=("wpid_1", "Invoices"),
    connection=None,
):
    connection = connection or world.connection_a
    return Run.objects.create(
        team=connection.team,
        connection=connection,
        run_id=f"wr_{name}",
        status=status,
        workflow_permanent_id=workflow[0],
        workflow_title=workflow[1],
        created_at=created,
        finished_at=finished,
    )


def shown(client, **params) -> set[str]:
    response = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"}), params)
    assert response.status_code == 200
    return {run.run_id.removeprefix("wr_") for run in response.context["page"].runs}


def in_zone(user, name):
    AccountSettings.objects.update_or_create(user=user, defaults={"time_zone": name})


# --- "last …" ranges --------------------------------------------------------------------


def test_last_hour_and_friends_on_created_and_finished_time(world, client_as):
    now = timezone.now()
    make_run(world, "new", created=now - timedelta(minutes=10), finished=now - timedelta(minutes=5))
    make_run(world, "hour", created=now - timedelta(minutes=50), finished=now - timedelta(hours=3))
    make_run(world, "day", created=now - timedelta(hours=20), finished=now - timedelta(minutes=30))
    make_run(world, "week", created=now - timedelta(days=6), finished=now - timedelta(days=6))
    make_run(world, "old", created=now - timedelta(days=30), finished=now - timedelta(days=30))
    make_run(world, "running", created=now - timedelta(minutes=3), status="running")
    client = client_as(world.viewer)

    assert shown(client, created_within="15m") == {"new", "running"}
    assert shown(client, created_within="1h") == {"new", "hour", "running"}
    assert shown(client, created_within="4h") == {"new", "hour", "running"}
    assert shown(client, created_within="24h") == {"new", "hour", "day", "running"}
    assert shown(client, created_within="7d") == {"new", "hour", "day", "week", "running"}
    # Finished time: a run still running has none.
    assert shown(client, finished_within="1h") == {"new", "day"}
    assert shown(client, finished_within="4h") == {"new", "hour", "day"}
    assert shown(client, finished_within="1h", created_within="1h") == {"new"}
    assert shown(client, finished_within="1h", status="failed") == {"new", "day"}
    # Found by the finished-time index, still newest first.
    response = client.get(
        reverse("runs:run_list", kwargs={"team_slug": "acme"}), {"finished_within": "24h"}
    )
    assert [run.run_id for run in response.context["page"].runs] == ["wr_new", "wr_hour", "wr_day"]


def test_a_relative_range_stays_relative(world, client_as, monkeypatch):
    """A "last hour" link opened later means the later last hour."""
    now = timezone.now()
    make_run(world, "a", created=now - timedelta(minutes=30))
    client = client_as(world.viewer)
    assert shown(client, created_within="1h") == {"a"}
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(hours=2))
    assert shown(client, created_within="1h") == set()


# --- custom ranges, time of day, the viewer's zone ---------------------------------------


def test_a_custom_range_has_a_time_of_day_in_the_viewers_zone(world, client_as):
    make_run(world, "before", created=datetime(2026, 11, 3, 8, 59, tzinfo=UTC))  # 09:59 Berlin
    make_run(world, "first", created=datetime(2026, 11, 3, 9, 0, tzinfo=UTC))  # 10:00 Berlin
    make_run(world, "last", created=datetime(2026, 11, 3, 9, 30, 59, tzinfo=UTC))  # 10:30:59
    make_run(world, "after", created=datetime(2026, 11, 3, 9, 31, tzinfo=UTC))  # 10:31
    in_zone(world.viewer, "Europe/Berlin")
    client = client_as(world.viewer)

    # The minute typed as the end is included, all of it.
    found = shown(client, created_from="2026-11-03T10:00", created_to="2026-11-03T10:30")
    assert found == {"first", "last"}
    # The same wall times in UTC are other instants.
    in_zone(world.viewer, "UTC")
    client = client_as(world.viewer)
    assert shown(client, created_from="2026-11-03T10:00", created_to="2026-11-03T10:30") == set()
    assert shown(client, created_from="2026-11-03T09:00", created_to="2026-11-03T09:30") == {
        "first",
        "last",
    }


def test_the_zone_is_named_next_to_the_custom_range_and_in_the_summary(world, client_as):
    in_zone(world.viewer, "Europe/Berlin")
    client = client_as(world.viewer)
    response = client.get(
        reverse("runs:run_list", kwargs={"team_slug": "acme"}),
        {"created_from": "2026-11-03T10:00", "status": "failed", "created_within": "4h"},
    )
    html = response.content.decode()
    assert html.count('<small class="zone-note">(Europe/Berlin)</small>') == 4
    text = page_text(response)
    assert "Created from: 2026-11-03 10:00 (Europe/Berlin)" in text
    assert "Status: Failed" in text and "Created: Last 4 hours" in text


def test_a_range_across_the_autumn_clock_change_in_berlin(world, client_as):
    """25 Oct 2026: 03:00 CEST becomes 02:00 CET, so 02:00–02:59 happens twice.
    00:00 to 05:59 Berlin is seven hours; "to 02:30" includes both 02:30s."""
    times = {
        "eve": datetime(2026, 10, 24, 21, 59, tzinfo=UTC),  # 23:59 CEST, the day before
        "midnight": datetime(2026, 10, 24, 22, 0, tzinfo=UTC),  # 00:00 CEST
        "first-0230": datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        "second-0230": datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 02:30 CET
        "second-0231": datetime(2026, 10, 25, 1, 31, tzinfo=UTC),  # 02:31 CET
        "0559": datetime(2026, 10, 25, 4, 59, tzinfo=UTC),  # 05:59 CET
        "0600": datetime(2026, 10, 25, 5, 0, tzinfo=UTC),  # 06:00 CET
    }
    for name, when in times.items():
        make_run(world, name, created=when)
    in_zone(world.viewer, "Europe/Berlin")
    client = client_as(world.viewer)

    assert shown(client, created_from="2026-10-25T00:00", created_to="2026-10-25T05:59") == {
        "midnight",
        "first-0230",
        "second-0230",
        "second-0231",
        "0559",
    }
    # The whole day by date alone: 25 hours.
    assert shown(client, created_from="2026-10-25", created_to="2026-10-25") == {
        "midnight",
        "first-0230",
        "second-0230",
        "second-0231",
        "0559",
        "0600",
    }
    # An hour that happened twice: from its first start, to its second end.
    assert shown(client, created_from="2026-10-25T02:30", created_to="2026-10-25T02:30") == {
        "first-0230",
        "second-0230",
    }


def test_a_time_the_spring_clock_change_skipped_is_refused_in_words(world, client_as):
    in_zone(world.viewer, "Europe/Berlin")
    client = client_as(world.viewer)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    response = client.get(url, {"created_from": "2026-03-29T02:30"}, **HTMX_RESULTS)
    assert response.status_code == 200
    assert (
        "Created from: 2026-03-29 02:30 does not exist in Europe/Berlin: the clocks skipped "
        "that hour." in page_text(response)
    )
    # 01:59 CET to 03:00 CEST is one minute and an instant apart.
    make_run(world, "spring", created=datetime(2026, 3, 29, 1, 0, tzinfo=UTC))  # 03:00 CEST
    assert shown(client, created_from="2026-03-29T01:59", created_to="2026-03-29T03:00") == {
        "spring"
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"created_within": "2h"}, "Created: “2h” is not one of the choices offered."),
        ({"finished_within": "<b>"}, "Finished: “&lt;b&gt;” is not one of the choices offered."),
        ({"retry": "sometimes"}, "Retries: “sometimes” is not one of the choices offered."),
        (
            {"finished_from": "yesterday"},
            "Finished from: Enter a date (2026-12-06) or a date and time (2026-12-06 14:30).",
        ),
        (
            {"created_to": "2026-02-30T10:00"},
            "Created to: Enter a date (2026-12-06) or a date and time (2026-12-06 14:30).",
        ),
        (
            {"finished_from": "2026-11-02T10:00", "finished_to": "2026-11-01T10:00"},
            "Finished to: The end is before the start.",
        ),
    ],
)
def test_bad_filters_are_left_out_with_a_clear_message(world, client_as, params, message):
    client = client_as(world.viewer)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    fragment = client.get(url, params, **HTMX_RESULTS)
    assert fragment.status_code == 200
    assert f"{message} That filter is left out." in fragment.content.decode()
    full = client.get(url, params)
    assert full.status_code == 200


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01",
        "9999-12-31",
        "0001-01-01T00:00",
        "9999-12-31T23:59",
        "9999-12-31T23:59+14:00",
        "0001-01-01T00:00-12:00",
    ],
)
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles", "Pacific/Kiritimati"])
def test_the_ends_of_the_calendar_are_no_bound_rather_than_an_error(world, text, zone):
    with timezone.override(ZoneInfo(zone)):
        form = RunFilterForm({"created_from": text, "finished_to": text})
        form.is_valid()
        assert list(filtered(Run.objects.all(), **form.filters())) == []


def test_a_frozen_instant_is_exact_and_zone_free():
    with timezone.override(BERLIN):
        moment = moment_parse("2026-11-03T09:00:00.123456+00:00")
    assert moment.start == moment.end == datetime(2026, 11, 3, 9, 0, 0, 123456, tzinfo=UTC)


# --- retries ------------------------------------------------------------------------------


def test_not_yet_retried_and_retried_and_failed_again(world, client_as):
    now = timezone.now()

    def run(name, status="failed", minutes=60):
        return make_run(world, name, created=now - timedelta(minutes=minutes), status=status)

    fresh, lost, fixed, again, unknown, twice = (
        run(n) for n in ("fresh", "lost", "fixed", "again", "unknown", "twice")
    )
    # Refused by Skyvern for certain: it was not retried.
    Retry.objects.create(run=lost, number=1, state=RetryState.FAILED)
    Retry.objects.create(
        run=fixed, number=1, state=RetryState.RETRIED, new_run=run("fixed-r", "completed", 5)
    )
    Retry.objects.create(
        run=again, number=1, state=RetryState.RETRIED, new_run=run("again-r", "timed_out", 5)
    )
    Retry.objects.create(run=unknown, number=1, state=RetryState.UNKNOWN)
    # Failed again once, then retried again and that one completed: no longer "failed again".
    Retry.objects.create(
        run=twice, number=1, state=RetryState.RETRIED, new_run=run("twice-r1", "terminated", 9)
    )
    Retry.objects.create(
        run=twice, number=2, state=RetryState.RETRIED, new_run=run("twice-r2", "completed", 4)
    )
    client = client_as(world.viewer)

    assert shown(client, retry="not_retried", status="failed") == {"fresh", "lost"}
    assert shown(client, retry="failed_again") == {"again"}
    assert "Retries: Retried and failed again" in page_text(
        client.get(
            reverse("runs:run_list", kwargs={"team_slug": "acme"}), {"retry": "failed_again"}
        )
    )


# --- workflows ----------------------------------------------------------------------------


def test_the_workflow_is_chosen_from_the_teams_own(world, client_as):
    now = timezone.now()
    make_run(world, "inv", created=now - timedelta(hours=2), workflow=("wpid_1", "Old invoices"))
    make_run(world, "inv2", created=now, workflow=("wpid_1", "Invoices"))
    make_run(world, "pod", created=now, workflow=("wpid_2", "Proof of delivery"))
    make_run(
        world,
        "other",
        created=now,
        workflow=("wpid_9", "Secret workflow"),
        connection=world.connection_b,
    )
    assert team_workflows(world.team_a) == [("wpid_1", "Invoices"), ("wpid_2", "Proof of delivery")]

    client = client_as(world.viewer)
    response = client.get(
        reverse("runs:run_list", kwargs={"team_slug": "acme"}), {"workflow": "wpid_2"}
    )
    html = response.content.decode()
    assert '<option value="wpid_2" selected>Proof of delivery</option>' in html
    assert '<option value="wpid_1">Invoices</option>' in html
    assert "Secret workflow" not in html and "wpid_9" not in html
    assert "Workflow: Proof of delivery" in page_text(response)
    assert shown(client, workflow="wpid_2") == {"pod"}
    # An older link's exact title still works.
    assert shown(client, workflow="old invoices") == {"inv"}


def test_a_workflows_first_run_is_in_the_workflow_list_at_once(world, client_as):
    """The page keeps the team's workflow list while its runs are as many
    (listing.team_workflows): a new run makes a new list."""
    now = timezone.now()
    make_run(world, "inv", created=now, workflow=("wpid_1", "Invoices"))
    client = client_as(world.viewer)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    assert '<option value="wpid_2">' not in client.get(url).content.decode()

    make_run(world, "pod", created=now, workflow=("wpid_2", "Proof of delivery"))
    assert '<option value="wpid_2">Proof of delivery</option>' in client.get(url).content.decode()
    # A title changed on runs already cached: within the minute the list is kept.
    Run.objects.filter(run_id="wr_pod").update(workflow_title="Delivery proofs")
    assert "Proof of delivery</option>" in client.get(url).content.decode()
    cache.clear()  # the minute has passed
    assert '<option value="wpid_2">Delivery proofs</option>' in client.get(url).content.decode()


# --- the person's time zone ---------------------------------------------------------------


def test_the_time_zone_is_chosen_on_the_account_page(world, client_as):
    client = client_as(world.viewer)
    account = reverse("twofactor:manage")
    assert '<option value="UTC" selected>UTC</option>' in client.get(account).content.decode()
    response = client.post(reverse("twofactor:time_zone_change"), {"time_zone": "Europe/Berlin"})
    assert response.status_code == 302
    assert AccountSettings.objects.get(user=world.viewer).time_zone == "Europe/Berlin"
    page = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"}))
    assert '<small class="zone-note">(Europe/Berlin)</small>' in page.content.decode()

    bad = client.post(reverse("twofactor:time_zone_change"), {"time_zone": "Mars/Olympus"})
    assert bad.status_code == 400
    assert "is not a time zone name" in page_text(bad)
    assert AccountSettings.objects.get(user=world.viewer).time_zone == "Europe/Berlin"


def test_the_time_zone_change_needs_csrf(world):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.viewer)
    response = client.post(reverse("twofactor:time_zone_change"), {"time_zone": "Europe/Berlin"})
    assert response.status_code == 403
    assert not AccountSettings.objects.filter(user=world.viewer).exists()
