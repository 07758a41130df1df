"""The ticket-ready summary of a bulk retry job: its wording, pinned."""

import re
from datetime import UTC, datetime

from console.bulk.models import BulkRetryJob
from console.bulk.summaries import bulk_job_summary
from tests.bulk.conftest import add_failed_runs, end_new_runs, make_job
from tests.bulk.test_following import job_url, new_run_ids, sent_job
from tests.helpers import page_text

STARTED = datetime(2026, 12, 6, 4, 50, tzinfo=UTC)


def at_fixed_time(job):
    BulkRetryJob.objects.filter(pk=job.pk).update(created_at=STARTED)
    return BulkRetryJob.objects.get(pk=job.pk)


def test_a_sent_job_with_runs_still_going(world):
    job = at_fixed_time(sent_job(world, 2))
    first, second = new_run_ids(job)
    summary = bulk_job_summary(job)
    originals = job.items.order_by("pk").values_list("run__run_id", flat=True)
    url = world.simulator.url
    assert summary.text == (
        f"On 2026-12-06 04:50 UTC, acme-operator started bulk retry #{job.pk} of 2 failed "
        "runs (reason: Portal was down overnight). Sent: 0 succeeded, 0 failed again, "
        f"2 still running (2 sent). New runs: {originals[0]} → {first} "
        f"({url}/runs/{first}) created, outcome pending; {originals[1]} → {second} "
        f"({url}/runs/{second}) created, outcome pending. Still pending: 2 still running "
        "at Skyvern."
    )
    assert f"[`{first}`]({url}/runs/{first})" in summary.markdown


def test_a_finished_job_says_what_failed_again_and_that_nothing_is_pending(world):
    job = sent_job(world, 2)
    end_new_runs(world, job, "completed", "failed", reason="Portal rejected the password")
    text = bulk_job_summary(at_fixed_time(job)).text
    assert "Sent: 1 succeeded, 1 failed again (2 sent)." in text
    assert re.search(r"→ wr_\S+ \(\S+\) completed; ", text)
    assert re.search(r"→ wr_\S+ \(\S+\) failed again \(Portal rejected the password\)\.", text)
    assert text.endswith("Nothing is pending.")


def test_skipped_runs_are_counted_with_their_reason(world):
    running = add_failed_runs(world, 1, status="running")
    failed = add_failed_runs(world, 1)
    job = at_fixed_time(make_job(world, running + failed))
    text = bulk_job_summary(job).text
    assert "Skipped 1 (1 not finished yet (only finished runs can be retried))." in text
    assert "Still pending: 1 still to be sent." in text


def test_the_job_page_has_the_summary_to_copy(world, client_as):
    job = sent_job(world, 1)
    response = client_as(world.viewer).get(job_url(job))
    assert "Summary for the ticket" in page_text(response)
    html = response.content.decode()
    assert 'id="job-summary-text" readonly' in html and "Copy summary" in html
    assert f"started bulk retry #{job.pk} of 1 failed run " in page_text(response)
