"""A bulk retry of "all matching" a filter with a "last …" time range: the
preview freezes the range to the instants it covered, so the confirmation acts
on exactly the runs previewed however late it comes ("never act on items I
didn't see"), while the runs page's link stays relative."""

import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from console.bulk.models import BulkRetryJob
from console.bulk.selection import Scope, Selection
from console.runs.models import Run

from .test_views import add, confirm_data, create_url, hidden_fields, post_pairs, preview_url


def test_the_preview_freezes_last_hour_and_the_confirmation_keeps_it(world, client_as, monkeypatch):
    now = timezone.now()
    previewed = add(world, 2)
    too_old = add(world, 1)
    Run.objects.filter(run_id__in=previewed).update(finished_at=now - timedelta(minutes=40))
    Run.objects.filter(run_id__in=too_old).update(finished_at=now - timedelta(minutes=70))
    client = client_as(world.operator)
    monkeypatch.setattr(timezone, "now", lambda: now)

    preview = post_pairs(
        client,
        preview_url(),
        [("scope", "filter"), ("f-status", "failed"), ("f-finished_within", "1h")],
    )
    html = preview.content.decode()
    assert re.search(r'bulk-total">2<', html)
    fields = dict(hidden_fields(html))
    assert "f-finished_within" not in fields
    assert fields["f-finished_from"] == (now - timedelta(hours=1)).astimezone(UTC).isoformat()
    assert fields["f-finished_to"] == now.astimezone(UTC).isoformat()
    assert "Finished from:" in html

    # Confirmed 50 minutes later: the previewed runs are now more than an hour
    # old, and another run finished since the preview (a run the person never saw).
    later = add(world, 1)
    Run.objects.filter(run_id__in=too_old).update(finished_at=now + timedelta(minutes=10))
    Run.objects.filter(run_id__in=later).update(finished_at=now + timedelta(minutes=20))
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(minutes=50))
    post_pairs(client, create_url(), confirm_data(html, reason="Portal down"))

    job = BulkRetryJob.objects.get()
    assert set(job.items.values_list("run__run_id", flat=True)) == set(previewed)
    assert job.selection["filter"]["finished_from"] == (now - timedelta(hours=1)).isoformat()


def test_freezing_is_the_same_twice_and_in_any_zone():
    now = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    selection = Selection(
        Scope.ALL_MATCHING,
        filter=(
            ("status", "failed"),
            ("created_within", "24h"),
            ("created_from", "2026-10-24T12:00"),
            ("finished_to", "2026-10-25T02:30"),
        ),
    )
    with timezone.override("Europe/Berlin"):
        frozen = selection.frozen(now=now)
    assert dict(frozen.filter) == {
        "status": "failed",
        # The later of "24 hours back" and 12:00 Berlin (10:00 UTC).
        "created_from": "2026-10-24T10:00:00+00:00",
        "created_to": "2026-10-25T01:30:00+00:00",
        # 02:30 Berlin happened twice that night: up to the end of the second one.
        "finished_to": "2026-10-25T01:31:00+00:00",
    }
    with timezone.override("America/New_York"):
        assert frozen.frozen(now=now + timedelta(days=3)) == frozen
