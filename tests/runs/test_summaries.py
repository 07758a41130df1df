"""The ticket-ready summary of a retry or rerun: its wording, pinned per case."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from console.runs.models import Retry, RetryKind, RetryState, Run
from console.runs.summaries import retry_summary
from tests.helpers import page_text

ASKED = datetime(2026, 12, 6, 4, 50, tzinfo=UTC)
ENDED = datetime(2026, 12, 6, 5, 2, tzinfo=UTC)


def make_run(world, run_id, **fields):
    defaults = {
        "status": "failed",
        "workflow_title": "Download carrier invoices",
        "created_at": ASKED,
        "app_url": f"https://app.skyvern.example/runs/{run_id}",
    }
    return Run.objects.create(
        team=world.team_a, connection=world.connection_a, run_id=run_id, **(defaults | fields)
    )


@pytest.fixture
def original(world):
    return make_run(world, "wr_1", failure_reason="Login failed: invalid credentials")


def retry_of(world, run, *, state=RetryState.RETRIED, new_run=None, **fields):
    return Retry.objects.create(
        run=run,
        number=1,
        state=state,
        requested_by=world.operator,
        requested_at=ASKED,
        new_run=new_run,
        **fields,
    )


FAILED = (
    "The Download carrier invoices run wr_1 (https://app.skyvern.example/runs/wr_1) failed: "
    "Login failed: invalid credentials. "
)


def test_a_retry_that_completed(world, original):
    new = make_run(world, "wr_2", status="completed", finished_at=ENDED)
    summary = retry_summary(retry_of(world, original, new_run=new))
    assert summary.text == (
        FAILED + "On 2026-12-06 04:50 UTC, acme-operator retried it as run "
        "wr_2 (https://app.skyvern.example/runs/wr_2). It completed at 2026-12-06 05:02 UTC."
    )
    assert summary.markdown == (
        "The Download carrier invoices run [`wr_1`](https://app.skyvern.example/runs/wr_1) "
        "failed: Login failed: invalid credentials. On 2026-12-06 04:50 UTC, acme-operator "
        "retried it as run [`wr_2`](https://app.skyvern.example/runs/wr_2). "
        "It completed at 2026-12-06 05:02 UTC."
    )


def test_a_retry_that_failed_again(world, original):
    new = make_run(world, "wr_2", status="timed_out", failure_reason="Page took too long")
    summary = retry_summary(retry_of(world, original, new_run=new))
    assert summary.text.endswith(
        "retried it as run wr_2 (https://app.skyvern.example/runs/wr_2). "
        "It timed out again: Page took too long."
    )


def test_a_retry_still_running_says_what_is_pending(world, original):
    new = make_run(world, "wr_2", status="running", app_url="")
    summary = retry_summary(retry_of(world, original, new_run=new))
    assert summary.text.endswith(
        "retried it as run wr_2. It is running; its outcome is still pending."
    )
    assert summary.markdown.endswith(
        "retried it as run `wr_2`. It is running; its outcome is still pending."
    )


def test_a_retry_whose_answer_was_lost(world, original):
    summary = retry_summary(retry_of(world, original, state=RetryState.UNKNOWN))
    assert summary.text == (
        FAILED + "On 2026-12-06 04:50 UTC, acme-operator retried it; Skyvern's answer was "
        "lost, so whether a new run was started is still being checked. It will not be "
        "sent again without checking."
    )


def test_a_retry_skyvern_refused(world, original):
    retry = retry_of(
        world, original, state=RetryState.FAILED, error="Skyvern is busy; try again shortly"
    )
    assert retry_summary(retry).text.endswith(
        "acme-operator retried it; Skyvern did not accept it: Skyvern is busy; try again "
        "shortly. Nothing was started."
    )


def test_a_rerun_on_the_latest_version(world, original):
    new = make_run(world, "wr_3", status="completed", finished_at=ENDED)
    retry = retry_of(world, original, new_run=new, kind=RetryKind.RERUN, version=5)
    assert retry_summary(retry).text == (
        FAILED + "On 2026-12-06 04:50 UTC, acme-operator reran it on the workflow's latest "
        "version (version 5) with the same parameters as run "
        "wr_3 (https://app.skyvern.example/runs/wr_3). It completed at 2026-12-06 05:02 UTC."
    )


def test_markdown_does_not_take_skyverns_words_as_markup(world):
    run = make_run(world, "wr_9", failure_reason="Click [here](https://evil.example) *now*")
    summary = retry_summary(retry_of(world, run, state=RetryState.UNKNOWN))
    assert "\\[here\\](https://evil.example) \\*now\\*" in summary.markdown
    assert "[here](https://evil.example) *now*" in summary.text


def test_the_detail_page_has_the_summary_in_read_only_boxes(world, client_as, original):
    new = make_run(world, "wr_2", status="completed", finished_at=ENDED)
    retry_of(world, original, new_run=new)
    url = reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": "wr_1"})
    response = client_as(world.viewer).get(url)
    html = response.content.decode()
    assert "Summary of retry #1" in page_text(response)
    assert "<textarea" in html and "readonly" in html
    assert "acme-operator retried it as run wr_2" in page_text(response)
    assert 'data-copy="summary-text-' in html and "Copy summary" in html
    assert "<script>" not in html  # copied by the static script (CSP)
