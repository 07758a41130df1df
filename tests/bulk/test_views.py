"""The bulk-retry pages: choosing runs on the runs page, the preview, confirming,
watching the job (page and polled fragment), steering it, unknown items, the
CSV export, and who may do what."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState, SkipReason
from console.bulk.tasks import bulk_retry_work
from console.runs.models import Retry, RetryState, Run
from console.teams.models import Membership, Role
from tests.bulk.conftest import end_new_runs
from tests.helpers import page_text

HTMX = {"HX-Request": "true"}
STOP_POLLING = 286


def runs_url():
    return reverse("runs:run_list", args=["acme"])


def preview_url():
    return reverse("bulk:bulk_retry_preview", args=["acme"])


def create_url():
    return reverse("bulk:bulk_retry_create", args=["acme"])


def job_url(job, name="bulk_job_detail"):
    return reverse(f"bulk:{name}", args=[job.team.slug, job.pk])


def pk_of(run_id) -> int:
    return Run.objects.get(run_id=run_id).pk


def add(world, n=1, **fields):
    fields.setdefault("status", "failed")
    return [world.add_run(**fields) for _ in range(n)]


def hidden_fields(html: str) -> list[tuple[str, str]]:
    """The hidden inputs of the preview's confirm form, as posted back."""
    form = html[html.index('class="bulk-confirm"') :]
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)


def confirm_data(html: str, **extra) -> list[tuple[str, str]]:
    fields = [(n, v) for n, v in hidden_fields(html) if n != "csrfmiddlewaretoken"]
    return fields + list(extra.items())


def post_pairs(client, url, pairs, **kwargs):
    """POST form pairs (repeated names allowed), as a browser would."""
    from urllib.parse import urlencode

    return client.post(
        url, urlencode(pairs), content_type="application/x-www-form-urlencoded", **kwargs
    )


@pytest.fixture
def incident(world):
    """The overnight incident: failed runs of two workflows, plus runs a bulk
    retry must skip (still running; already retried)."""
    invoices = add(
        world,
        3,
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: portal unavailable",
    )
    proofs = add(
        world, 2, workflow_title="Upload proof of delivery", failure_reason="Portal timed out"
    )
    running = add(world, 1, status="running", workflow_title="Download carrier invoices")
    retried = add(
        world, 1, workflow_title="Upload proof of delivery", failure_reason="Portal timed out"
    )
    # Retried once already (by hand; Skyvern didn't confirm it, so it counts).
    Retry.objects.create(
        run=Run.objects.get(run_id=retried[0]),
        number=1,
        state=RetryState.UNKNOWN,
        requested_by=world.operator,
    )
    completed = add(world, 1, status="completed", workflow_title="Sync price list")
    return {
        "invoices": invoices,
        "proofs": proofs,
        "running": running,
        "retried": retried,
        "completed": completed,
    }


# --- the runs page ----------------------------------------------------------------------


def test_operators_get_checkboxes_and_the_selection_form(world, client_as, incident):
    html = client_as(world.operator).get(runs_url()).content.decode()
    assert 'id="bulk-select"' in html
    for run_id in incident["invoices"]:
        pk = pk_of(run_id)
        assert f'form="bulk-select" name="run" value="{pk}"' in html
        assert f'name="page_run" value="{pk}"' in html
    assert 'name="scope" value="filter"' in html and "matching this filter" in html
    # One control, drawn twice: a box for JavaScript, a button without it.
    shown = html.count('class="bulk-pick"')
    assert html.count(f"Select all {shown} on this page") == 2, shown
    assert reverse("bulk:bulk_job_list", args=["acme"]) in html


def test_viewers_get_no_checkboxes_but_can_find_the_jobs(world, client_as, incident):
    html = client_as(world.viewer).get(runs_url()).content.decode()
    assert 'name="run"' not in html and "bulk-select" not in html
    assert reverse("bulk:bulk_job_list", args=["acme"]) in html


def test_the_filter_rides_along_with_the_selection(world, client_as, incident):
    url = runs_url() + "?status=failed&q=invoices&reason=login"
    html = client_as(world.operator).get(url, headers={**HTMX, "HX-Target": "run-results"})
    html = html.content.decode()
    assert '<input type="hidden" name="f-status" value="failed">' in html
    assert '<input type="hidden" name="f-q" value="invoices">' in html
    assert '<input type="hidden" name="f-reason" value="login">' in html


def test_more_filters_narrow_the_runs_page(world, client_as):
    old = add(
        world,
        1,
        status="completed",
        workflow_title="Old one",
        created_at=timezone.now() - timedelta(days=10),
    )
    login = add(
        world,
        1,
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
        errors=[{"error_code": "LOGIN_FAILED", "reasoning": "Login failed"}],
    )
    captcha = add(
        world,
        1,
        workflow_title="Upload proof of delivery",
        failure_reason="A captcha blocked the form",
        errors=[{"error_code": "CAPTCHA_DETECTED", "reasoning": "captcha"}],
    )
    client = client_as(world.viewer)

    def shown(**query):
        html = client.get(runs_url(), query).content.decode()
        return {run_id for run_id in old + login + captcha if f'data-run-id="{run_id}"' in html}

    assert shown() == {*old, *login, *captcha}
    assert shown(error_code="LOGIN_FAILED") == set(login)
    assert shown(reason="CAPTCHA") == set(captcha)
    assert shown(workflow="upload proof of delivery") == set(captcha)
    week_ago = (timezone.now() - timedelta(days=7)).date().isoformat()
    assert shown(created_from=week_ago) == {*login, *captcha}
    assert shown(created_to=week_ago) == set(old)
    html = client.get(runs_url(), {"created_from": "2030-01-02", "created_to": "2030-01-01"})
    assert "The end is before the start." in html.content.decode()


# --- the preview --------------------------------------------------------------------------


def test_preview_by_ids_counts_breakdowns_and_skip_reasons(world, client_as, incident):
    chosen = [
        *incident["invoices"],
        *incident["proofs"],
        *incident["running"],
        *incident["retried"],
    ]
    client = client_as(world.operator)
    response = client.post(preview_url(), {"scope": "ids", "run": [pk_of(r) for r in chosen]})

    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'bulk-to-send">5<.*bulk-total">7<', html)
    assert re.search(r"Download carrier invoices</th><td class=\"num\">3<", html)
    assert re.search(r"Upload proof of delivery</th><td class=\"num\">2<", html)
    assert re.search(r"Login failed: portal unavailable</th><td class=\"num\">3<", html)
    assert SkipReason.NOT_TERMINAL.label in html and SkipReason.ALREADY_RETRIED.label in html
    assert incident["running"][0] in html and incident["retried"][0] in html
    assert world.simulator.state.retry_counts() == {}  # nothing sent
    assert not BulkRetryJob.objects.exists()

    # Ticking "include already-retried runs" and previewing again counts it in.
    again = post_pairs(client, preview_url(), confirm_data(html, include_already_retried="on"))
    assert re.search(r'bulk-to-send">6<', again.content.decode())
    assert SkipReason.ALREADY_RETRIED.label not in again.content.decode()


def test_preview_of_all_runs_matching_the_filter(world, client_as, incident):
    client = client_as(world.operator)
    response = post_pairs(
        client, preview_url(), [("scope", "filter"), ("f-status", "failed"), ("f-reason", "portal")]
    )
    html = response.content.decode()
    # Failed, reason containing "portal": 3 invoices + 2 proofs + the retried one.
    assert re.search(r'bulk-to-send">5<.*bulk-total">6<', html)
    assert "Failure reason contains: <strong>portal</strong>" in html
    assert ("upto", str(Run.objects.order_by("-pk").first().pk)) in hidden_fields(html)


def test_an_empty_selection_goes_back_to_the_runs_page_with_a_message(world, client_as):
    client = client_as(world.operator)
    response = post_pairs(client, preview_url(), [("scope", "ids"), ("f-status", "failed")])
    assert response.status_code == 303
    assert response["Location"] == runs_url() + "?status=failed"
    page = client.get(response["Location"]).content.decode()
    assert "No runs were selected" in page


def test_another_teams_run_ids_are_left_out_and_said_so(world, client_as, incident):
    foreign = world.add_run(world.connection_b, status="failed")
    ours = incident["invoices"][0]
    client = client_as(world.operator)
    response = client.post(preview_url(), {"scope": "ids", "run": [pk_of(ours), pk_of(foreign)]})

    html = response.content.decode()
    assert "1 selected run is not Acme Logistics" in html and "left out" in html
    assert foreign not in html
    assert re.search(r'bulk-to-send">1<.*bulk-total">1<', html)
    assert ("run", str(pk_of(foreign))) not in hidden_fields(html)

    # Even posted straight to the confirmation, the foreign run is not included.
    response = client.post(
        create_url(),
        {"scope": "ids", "run": [pk_of(ours), pk_of(foreign)], "reason": "Portal down"},
    )
    job = BulkRetryJob.objects.get()
    assert [item.run.run_id for item in job.items.all()] == [ours]
    assert job.team == world.team_a


# --- confirming ---------------------------------------------------------------------------


def test_the_reason_is_required_and_nothing_is_lost(world, client_as, incident):
    client = client_as(world.operator)
    preview = client.post(
        preview_url(), {"scope": "ids", "run": [pk_of(r) for r in incident["invoices"]]}
    )
    data = confirm_data(preview.content.decode(), max_steps_override="7", reason="   ")
    response = post_pairs(client, create_url(), data)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Say why these runs are retried" in html
    assert 'name="max_steps_override" value="7"' in html
    assert sorted(v for n, v in hidden_fields(html) if n == "run") == sorted(
        str(pk_of(r)) for r in incident["invoices"]
    )
    assert not BulkRetryJob.objects.exists()


def test_a_bad_max_steps_value_is_shown_inline(world, client_as, incident):
    client = client_as(world.operator)
    response = client.post(
        create_url(),
        {
            "scope": "ids",
            "run": [pk_of(incident["invoices"][0])],
            "reason": "x",
            "max_steps_override": "0",
        },
    )
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert not BulkRetryJob.objects.exists()


def test_confirming_creates_the_job_and_returns_at_once(
    world, client_as, incident, django_capture_on_commit_callbacks
):
    client = client_as(world.operator)
    preview = post_pairs(client, preview_url(), [("scope", "filter"), ("f-status", "failed")])
    html = preview.content.decode()
    late = add(world, 1)  # cached after the preview: must not slip in
    data = confirm_data(html, reason="Portal down overnight; fixed 08:40", max_steps_override="25")

    with django_capture_on_commit_callbacks(execute=True):
        response = post_pairs(client, create_url(), data)

    job = BulkRetryJob.objects.get()
    assert response.status_code == 303
    assert response["Location"] == job_url(job)
    assert job.created_by == world.operator and job.reason.startswith("Portal down")
    assert job.max_steps_override == 25 and not job.include_already_retried
    assert job.selection["scope"] == "filter"
    assert job.selection["filter"]["statuses"] == ["failed"]
    run_ids = set(job.items.values_list("run__run_id", flat=True))
    assert late[0] not in run_ids
    assert run_ids == {*incident["invoices"], *incident["proofs"], *incident["retried"]}
    assert job.items.filter(state=ItemState.SKIPPED).count() == 1  # the retried one
    assert world.simulator.state.retry_counts() == {}  # the worker sends, not the request
    from django_tasks_db.models import DBTaskResult

    assert DBTaskResult.objects.filter(task_path=bulk_retry_work.module_path).exists()

    page = client.get(response["Location"]).content.decode()
    assert f"Bulk retry #{job.pk} created" in page
    assert "Portal down overnight; fixed 08:40" in page
    assert "Status: <strong>Failed</strong>" in page


# --- watching -----------------------------------------------------------------------------


def make_job(world, client, run_ids, **extra):
    data = {"scope": "ids", "run": [pk_of(r) for r in run_ids], "reason": "Portal down"}
    response = client.post(create_url(), {**data, **extra})
    assert response.status_code == 303, response.content.decode()[:2000]
    return BulkRetryJob.objects.order_by("-pk").first()


def test_the_job_page_polls_while_active_and_stops_when_finished(world, client_as, incident):
    client = client_as(world.viewer)
    operator = Client()
    operator.force_login(world.operator)
    job = make_job(world, operator, incident["invoices"])
    progress = job_url(job, "bulk_job_progress")

    page = client.get(job_url(job)).content.decode()
    assert 'hx-trigger="every 1s"' in page and progress in page
    assert '<a href="?">Refresh</a>' in page  # without JavaScript: the page again
    assert 'role="progressbar"' in page and 'aria-valuenow="0"' in page
    assert "Portal down" in page and world.operator.get_username() in page
    assert "(just now)" in page  # not "0 minutes ago"
    fragment = client.get(progress, headers=HTMX)
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    assert 'hx-trigger="every 1s"' in fragment.content.decode()

    bulk_retry_work.call(job.pk)

    # Sent, but the new runs have not ended: the page follows them.
    fragment = client.get(progress, headers=HTMX)
    assert fragment.status_code == 200 and 'hx-trigger="every 1s"' in fragment.content.decode()
    assert "Following the new runs until they end" in page_text(fragment)
    end_new_runs(world, job, "completed")

    fragment = client.get(progress, headers=HTMX)
    html = fragment.content.decode()
    assert fragment.status_code == STOP_POLLING
    assert "3 succeeded, 0 failed again (3 sent)" in page_text(fragment)
    assert "hx-trigger" not in html and 'aria-valuenow="3"' in html and "(100%)" in html
    page = client.get(job_url(job)).content.decode()
    assert "hx-trigger" not in page.split('id="job-live"')[1]
    assert ">Refresh</a>" not in page  # nothing more to wait for
    # The retried items link their new runs.
    for item in job.items.select_related("new_run"):
        assert item.state == ItemState.RETRIED
        assert reverse("runs:run_detail", args=["acme", item.new_run.run_id]) in page
    # Without htmx, the progress URL is the job page.
    assert client.get(progress).status_code == 302


def test_items_filtered_by_state(world, client_as, incident):
    client = client_as(world.operator)
    job = make_job(world, client, [*incident["invoices"], *incident["running"]])
    page = client.get(job_url(job), {"state": "skipped"}).content.decode()
    assert '<a href="?state=skipped">Refresh</a>' in page  # keeps the state shown
    table = page.split('class="job-items stack-on-phone"')[1]
    assert incident["running"][0] in table and incident["invoices"][0] not in table
    assert SkipReason.NOT_TERMINAL.label in table


def test_pause_resume_cancel(world, client_as, incident):
    client = client_as(world.operator)
    job = make_job(world, client, incident["invoices"])

    response = client.post(job_url(job, "bulk_job_pause"))
    assert response.status_code == 303 and response["Location"] == job_url(job)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    page = client.get(job_url(job)).content.decode()
    waiting = len(incident["invoices"])
    paused = re.search(r'class="job-paused-note">(.*?)</p>', page, re.S).group(1)
    assert re.fullmatch(
        rf"Paused by {world.operator.get_username()} at <time [^>]+>\d\d:\d\d:\d\d UTC</time>: "
        rf"{waiting} runs wait until someone resumes it; nothing more is sent meanwhile\.",
        paused,
    ), paused
    assert ">Resume</button>" in page and "paused by" not in page

    response = client.post(job_url(job, "bulk_job_resume"), {"state": "pending"}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and "Resumed." in html
    assert f"resumed by {world.operator.get_username()} at" in html
    assert "queued by" not in html and "job-paused-note" not in html
    assert ">Pause</button>" in html and "state=pending" in html  # keeps the item filter
    job.refresh_from_db()
    assert job.state == JobState.QUEUED

    # Pausing twice is refused in words, not with an error page.
    client.post(job_url(job, "bulk_job_pause"))
    response = client.post(job_url(job, "bulk_job_pause"), headers=HTMX)
    assert "can&#x27;t be paused" in response.content.decode()

    response = client.post(job_url(job, "bulk_job_cancel"), {"confirm": "yes"})
    job.refresh_from_db()
    assert job.state == JobState.CANCELED
    assert set(job.items.values_list("skip_reason", flat=True)) == {SkipReason.JOB_CANCELED}
    page = client.get(job_url(job)).content.decode()
    assert ">Pause</button>" not in page and "Cancel job" not in page
    assert f"canceled by {world.operator.get_username()} at" in page
    assert world.simulator.state.retry_counts() == {}


def test_cancel_job_asks_first_on_a_page_that_needs_no_javascript(world, client_as, incident):
    """Issue 14: "Cancel job" is a confirmation step, not a browser dialog."""
    client = client_as(world.operator)
    job = make_job(world, client, incident["invoices"])
    page = client.get(job_url(job), {"state": "pending"}).content.decode()
    link = reverse("bulk:bulk_job_cancel", args=["acme", job.pk])
    assert f'href="{link}?state=pending"' in page and "Cancel job…" in page

    asking = client.get(link, {"state": "pending"})
    html = asking.content.decode()
    assert asking.status_code == 200 and "Cancel bulk retry #" in html
    assert f"<strong>{job.total}</strong> runs not sent yet will be skipped" in html
    assert "Yes, cancel this job" in html and "Keep it going" in html
    assert 'name="state" value="pending"' in html
    # Neither the question nor a POST without the confirmation cancels.
    unconfirmed = client.post(link)
    assert unconfirmed.status_code == 200 and "Yes, cancel this job" in unconfirmed.content.decode()
    job.refresh_from_db()
    assert job.state == JobState.QUEUED

    done = client.post(link, {"confirm": "yes", "state": "pending"})
    assert done.status_code == 303 and done["Location"] == job_url(job) + "?state=pending"
    job.refresh_from_db()
    assert job.state == JobState.CANCELED
    assert "there is nothing to cancel" in client.get(link).content.decode()


def test_an_unknown_items_check_shows_the_candidate_and_the_person_links_it(world, client_as):
    """Issue 11: the run Skyvern made (its lineage null) is shown on the job page
    with its evidence; "This is the retry" links it, and nothing is sent again."""
    run_id = add(world, 1)[0]
    client = client_as(world.operator)
    job = make_job(world, client, [run_id])
    state = world.simulator.state
    state.configure(drop_connection=1.0)  # the run is made, the answer lost
    bulk_retry_work.call(job.pk)
    state.configure(drop_connection=0.0)
    item = job.items.get()
    assert item.state == ItemState.UNKNOWN
    check = reverse("bulk:bulk_item_check", args=["acme", job.pk, item.pk])

    response = client.post(check, {"state": "unknown"}, headers=HTMX)

    text = page_text(response)
    assert response.status_code == 200 and "probably not created" not in text
    [made] = Retry.objects.get(pk=item.retry_id).proposed_runs.split()
    assert made in text and "same parameters as the original" in text
    link = reverse("runs:retry_link", args=["acme", run_id, 1])
    assert link in response.content.decode() and "This is the retry" in text
    # Without JavaScript the same evidence is on the page the check comes back to.
    response = client.post(check, {"state": "unknown"})
    assert response.status_code == 303
    assert made in page_text(client.get(response["Location"]))

    response = client.post(link, {"run_id": made, "next": job_url(job)})

    assert response.status_code == 302 and response["Location"] == job_url(job)
    item.refresh_from_db()
    assert item.state == ItemState.RETRIED and item.new_run.run_id == made
    assert f"{made} linked as the new run" in page_text(client.get(job_url(job)))
    assert state.retry_count(run_id) == 1


def test_unknown_items_check_then_retry_anyway(world, client_as):
    run_id = add(world, 1)[0]
    client = client_as(world.operator)
    job = make_job(world, client, [run_id])
    state = world.simulator.state
    state.configure(drop_connection=1.0, apply_then_fail=False)  # dropped before acting
    bulk_retry_work.call(job.pk)
    state.configure(drop_connection=0.0, apply_then_fail=True)
    item = job.items.get()
    assert item.state == ItemState.UNKNOWN

    page = client.get(job_url(job), {"state": "unknown"}).content.decode()
    check = reverse("bulk:bulk_item_check", args=["acme", job.pk, item.pk])
    anyway = reverse("bulk:bulk_item_retry_anyway", args=["acme", job.pk, item.pk])
    assert check in page and anyway in page

    response = client.post(check, {"state": "unknown"}, headers=HTMX)
    assert response.status_code == 200 and "No new run" in response.content.decode()
    response = client.post(check, {"state": "unknown"})
    assert response.status_code == 303
    assert response["Location"] == job_url(job) + "?state=unknown"

    confirm_page = client.get(anyway).content.decode()
    assert "may already have made a new run" in confirm_page
    response = client.post(anyway, {})  # not confirmed
    assert response.status_code == 200 and "Tick the box" in response.content.decode()
    item.refresh_from_db()
    assert item.state == ItemState.UNKNOWN and state.retry_count(run_id) == 0

    response = client.post(anyway, {"confirm": "on"})
    assert response.status_code == 303
    item.refresh_from_db()
    assert item.state == ItemState.PENDING
    bulk_retry_work.call(job.pk)
    item.refresh_from_db()
    assert item.state == ItemState.RETRIED and state.retry_count(run_id) == 1


def test_the_items_as_csv(world, client_as, incident):
    client = client_as(world.operator)
    job = make_job(world, client, [*incident["invoices"], *incident["running"]])
    bulk_retry_work.call(job.pk)
    BulkRetryItem.objects.filter(job=job, state=ItemState.SKIPPED).update(
        error='=HYPERLINK("http://evil")', check_note="|calc"
    )

    response = client_as(world.viewer).get(job_url(job, "bulk_job_export"))

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f"bulk-retry-acme-{job.pk}-items.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["run_id"] for r in rows] == [*incident["invoices"], *incident["running"]]
    by_run = {r["run_id"]: r for r in rows}
    for run_id in incident["invoices"]:
        new = Run.objects.get(retried_from__run_id=run_id)
        assert by_run[run_id]["state"] == "retried"
        assert by_run[run_id]["new_run_id"] == new.run_id
        assert by_run[run_id]["finished_at"]
    skipped = by_run[incident["running"][0]]
    assert skipped["state"] == "skipped" and skipped["skip_reason"] == SkipReason.NOT_TERMINAL.label
    # Never a formula in a spreadsheet, with the same guard as the audit log's export.
    assert skipped["error"].startswith("'=") and skipped["check_note"] == "'|calc"


def test_the_jobs_list_newest_first(world, client_as, incident):
    client = client_as(world.operator)
    first = make_job(world, client, incident["invoices"][:1], reason="First incident")
    second = make_job(world, client, incident["proofs"][:1], reason="Second incident")
    html = client_as(world.viewer).get(reverse("bulk:bulk_job_list", args=["acme"]))
    html = html.content.decode()
    assert html.index(f"#{second.pk}<") < html.index(f"#{first.pk}<")
    assert "First incident" in html and "Second incident" in html
    assert world.operator.get_username() in html


# --- who may do what ----------------------------------------------------------------------


def test_viewers_watch_but_cannot_steer(world, client_as, incident):
    operator = Client()
    operator.force_login(world.operator)
    job = make_job(world, operator, incident["invoices"])
    BulkRetryItem.objects.filter(job=job).update(state=ItemState.UNKNOWN)
    item = job.items.first()
    client = client_as(world.viewer)

    page = client.get(job_url(job), {"state": "unknown"}).content.decode()
    # The header has Sign out and the theme switch; after main, the shortcuts' Close.
    main = page.split("<main", 1)[1].split("</main>", 1)[0]
    # No button but the ticket summary's copy buttons.
    assert main.count("<button") == main.count("data-copy=")
    assert "Retry anyway" not in page
    for name in ("bulk_job_pause", "bulk_job_resume", "bulk_job_cancel"):
        assert client.post(job_url(job, name), {"confirm": "yes"}).status_code == 403
    assert client.get(job_url(job, "bulk_job_cancel")).status_code == 403
    for name in ("bulk_item_check", "bulk_item_retry_anyway"):
        url = reverse(f"bulk:{name}", args=["acme", job.pk, item.pk])
        assert client.post(url, {"confirm": "on"}).status_code == 403
    assert client.post(preview_url(), {"scope": "ids", "run": [item.run_id]}).status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert set(job.items.values_list("state", flat=True)) == {ItemState.UNKNOWN}


def test_outsiders_and_other_teams_jobs_are_not_found(world, client_as, incident):
    operator = Client()
    operator.force_login(world.operator)
    job = make_job(world, operator, incident["invoices"])
    assert client_as(world.outsider).get(job_url(job)).status_code == 404
    # Team A's job under team B's slug, by an admin of team B.
    Membership.objects.filter(user=world.outsider).update(role=Role.ADMIN)
    url = reverse("bulk:bulk_job_detail", args=["globex", job.pk])
    assert client_as(world.outsider).get(url).status_code == 404
    assert (
        client_as(world.outsider)
        .post(reverse("bulk:bulk_job_cancel", args=["globex", job.pk]), {"confirm": "yes"})
        .status_code
        == 404
    )
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_csrf_is_enforced_and_the_htmx_header_carries_it(world, incident):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator)
    page = client.get(runs_url()).content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    data = {"scope": "ids", "run": [pk_of(incident["invoices"][0])], "reason": "x"}
    assert client.post(create_url(), data).status_code == 403
    assert not BulkRetryJob.objects.exists()
    response = client.post(create_url(), data, headers={"X-CSRFToken": token})
    assert response.status_code == 303


def test_all_on_this_page_can_be_previewed_then_confirmed(
    world, client_as, incident, django_capture_on_commit_callbacks
):
    """The "All N on this page" button: the preview carries the page's runs
    forward, and confirming it makes a job over exactly those runs."""
    client = client_as(world.operator)
    page = incident["invoices"][:3]
    preview = post_pairs(
        client, preview_url(), [("scope", "page"), *(("page_run", pk_of(r)) for r in page)]
    )
    html = preview.content.decode()
    assert "Selected: the runs on one page" in html

    data = confirm_data(html, reason="Portal down overnight")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_pairs(client, create_url(), data)

    assert response.status_code == 303, "There were no runs on that page." not in str(response)
    job = BulkRetryJob.objects.get()
    assert response["Location"] == job_url(job)
    assert job.selection["scope"] == "page"
    assert set(job.items.values_list("run__run_id", flat=True)) == set(page)
