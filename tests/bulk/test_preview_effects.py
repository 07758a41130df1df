"""A bulk retry says what it will do: runs Skyvern retries itself and runs
that succeeded are skipped unless ticked in (the tick is audited), and the
side effects of the runs to be sent are counted, credits summed."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.audit.models import AuditEntry
from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, SkipReason
from console.bulk.services import bulk_retry_preview
from console.runs.models import Run
from tests.bulk.test_views import confirm_data, pk_of, post_pairs
from tests.helpers import page_text

from .conftest import make_job

HOOK = "https://hooks.customer.example/skyvern/secret-token"


@pytest.fixture
def kinds(world):
    """Two plain failed runs (one calling the customer's webhook, with a
    browser session), one Skyvern retries itself, two that succeeded."""
    plain = [
        world.add_run(status="failed", webhook_url=HOOK, browser_session_id="pbs_1"),
        world.add_run(status="failed"),
    ]
    pending = [world.add_run(status="failed", retry_pending=True)]
    completed = [world.add_run(status="completed", webhook_url=HOOK) for _ in range(2)]
    return {"plain": plain, "pending": pending, "completed": completed}


def preview(world, run_ids, **ticks):
    return bulk_retry_preview(
        team=world.team_a,
        runs=Run.objects.filter(run_id__in=run_ids),
        include_already_retried=False,
        **ticks,
    )


def every(kinds):
    return [run_id for ids in kinds.values() for run_id in ids]


def test_skyvern_retrying_and_completed_runs_are_skipped_unless_ticked(world, kinds):
    shown = preview(world, every(kinds))
    skipped = {group.reason: group.count for group in shown.skipped}
    assert shown.to_send == 2
    assert skipped == {SkipReason.SKYVERN_RETRIES: 1, SkipReason.COMPLETED: 2}

    both = preview(world, every(kinds), include_skyvern_retrying=True, include_completed=True)
    assert both.to_send == 5 and not both.skipped
    assert (both.effects.beside_skyvern, both.effects.completed) == (1, 2)


def test_a_next_attempt_still_to_come_is_skipped_one_past_is_not(world):
    later, past = world.add_run(status="failed"), world.add_run(status="failed")
    Run.objects.filter(run_id=later).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    Run.objects.filter(run_id=past).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    shown = preview(world, [later, past])
    assert shown.to_send == 1
    assert [r.run_id for r in shown.skipped[0].runs] == [later]


def test_side_effects_are_counted_and_credits_summed(world, kinds):
    Run.objects.filter(run_id__in=kinds["plain"]).update(credits_used=12)
    Run.objects.filter(run_id__in=kinds["completed"]).update(credits_used=None)
    shown = preview(world, every(kinds), include_completed=True)
    effects = shown.effects
    assert shown.to_send == 4
    assert effects.webhook_calls == 3  # one failed run and the two completed ones
    assert [(row.label, row.count) for row in effects.webhook_hosts] == [
        ("hooks.customer.example", 3)
    ]
    assert effects.browser_sessions == 1
    # Only the runs that report credits count; the preview says how many did.
    assert (effects.credits, effects.credits_runs) == (24, 2)


def test_a_job_skips_them_too(world, kinds):
    job = make_job(world, every(kinds))
    skipped = dict(
        BulkRetryItem.objects.filter(job=job, state=ItemState.SKIPPED).values_list(
            "run__run_id", "skip_reason"
        )
    )
    assert skipped == {
        kinds["pending"][0]: SkipReason.SKYVERN_RETRIES,
        **{run_id: SkipReason.COMPLETED for run_id in kinds["completed"]},
    }
    created = AuditEntry.objects.get(action="bulk_job_create", target_id=str(job.pk))
    assert "skyvern_retries_overridden" not in created.details


def test_a_job_with_the_ticks_sends_them_and_the_audit_log_says_so(world, kinds):
    ticked = make_job(world, every(kinds), include_skyvern_retrying=True, include_completed=True)
    assert ticked.items.filter(state=ItemState.PENDING).count() == 5
    created = AuditEntry.objects.get(action="bulk_job_create", target_id=str(ticked.pk))
    assert created.details["skyvern_retries_overridden"] == 1
    assert created.details["completed_included"] == 2


def test_the_preview_page_shows_the_skipped_counts_effects_and_ticks(world, client_as, kinds):
    Run.objects.filter(run_id__in=kinds["plain"]).update(credits_used=7)
    Run.objects.filter(run_id__in=kinds["completed"]).update(credits_used=None)
    client = client_as(world.operator)
    url = reverse("bulk:bulk_retry_preview", args=["acme"])
    response = client.post(url, {"scope": "ids", "run": [pk_of(r) for r in every(kinds)]})
    html = response.content.decode()
    text = page_text(response)
    assert re.search(r'bulk-to-send">2<.*bulk-total">5<', html, re.S)
    assert "Skyvern retries it itself : 1 — skipped unless you tick" in text
    assert "It succeeded (retrying runs it again) : 2 — skipped unless you tick" in text
    assert "1 will call the customer's webhook again: hooks.customer.example (1)" in text
    assert "1 re-uses the browser session of its run" in text
    assert "About 14 credits" in text
    assert "secret-token" not in html
    assert 'name="include_skyvern_retrying"' in html and 'name="include_completed"' in html

    # Ticking both and updating the preview counts them in, and says so.
    again = post_pairs(
        client,
        url,
        confirm_data(html, include_skyvern_retrying="on", include_completed="on"),
    )
    text = page_text(again)
    assert re.search(r'bulk-to-send">5<', again.content.decode())
    assert "2 succeeded and will run again" in text
    assert "1 will run beside Skyvern's own retry of them" in text

    # Confirming with the ticks makes the job over all five, audited.
    created = post_pairs(
        client,
        reverse("bulk:bulk_retry_create", args=["acme"]),
        confirm_data(
            again.content.decode(),
            include_skyvern_retrying="on",
            include_completed="on",
            reason="Customer asked for a re-run",
        ),
    )
    assert created.status_code == 303
    job = BulkRetryJob.objects.get()
    assert job.items.filter(state=ItemState.PENDING).count() == 5
    event = AuditEntry.objects.get(action="bulk_job_create", target_id=str(job.pk))
    assert event.details["completed_included"] == 2
