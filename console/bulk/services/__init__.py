"""Bulk retry: choose runs, preview, and retry them in the background without
hammering Skyvern, without retrying any run twice, and saying at the end what
happened to each one.

Views, tasks and commands call these functions; nothing else changes a job.
One module per part of the work:
- `preview`: which of the runs selected in a team a bulk retry would send,
  which it would skip, and why;
- `jobs`: creating a bulk retry job; pausing, resuming and canceling it; its
  progress;
- `throttle`: per connection, which item goes out next and when, shared by
  every job and worker; the claim that lets each item out once;
- `sending`: the worker that sends each claimed item's retry, at most once,
  and picks up jobs whose worker died;
- `checking`: a run whose retry outcome is unknown: check at Skyvern, or
  retry anyway;
- `canary`: a big job sends a few runs first and goes on only if enough
  of their retries succeed; then it keeps watching, and halts itself;
- `following`: each sent retry's new run followed to its end (completed,
  failed again, still running), and when the job is over;
- `common`: what they share (the refusal, the operator check, the audit row,
  the background tasks they book).

Callers import from here (`from console.bulk.services import bulk_retry_create`).
The names here are copies: to patch one in a test, patch the module that looks
it up (e.g. `console.bulk.services.sending.POLL_SECONDS`). Tuning constants are
not re-exported, so a patch aimed at this package fails instead of doing nothing.
"""

from .canary import Guard, bulk_job_guard, canary_size
from .checking import CheckResult, bulk_item_check, bulk_item_retry_anyway
from .common import BulkRetryRefused
from .following import (
    FollowUp,
    bulk_job_follow,
    bulk_job_settle,
    bulk_jobs_follow,
    item_outcomes,
)
from .jobs import (
    JobProgress,
    bulk_job_progress,
    bulk_retry_cancel,
    bulk_retry_create,
    bulk_retry_pause,
    bulk_retry_resume,
    bulk_retry_set_threshold,
    item_counts,
)
from .preview import (
    Breakdown,
    BulkPreview,
    SkipGroup,
    bulk_retry_preview,
    failing_connections,
)
from .sending import (
    bulk_cancel_send,
    bulk_item_send,
    bulk_items_give_up_stale,
    bulk_job_work,
    bulk_jobs_revive,
)
from .throttle import Claim, bulk_item_claim, sending_lease, throttle_for

__all__ = [
    "Breakdown",
    "BulkPreview",
    "BulkRetryRefused",
    "CheckResult",
    "Claim",
    "FollowUp",
    "Guard",
    "JobProgress",
    "SkipGroup",
    "bulk_cancel_send",
    "bulk_item_check",
    "bulk_job_guard",
    "bulk_item_claim",
    "bulk_item_retry_anyway",
    "bulk_item_send",
    "bulk_job_follow",
    "bulk_job_settle",
    "bulk_jobs_follow",
    "bulk_items_give_up_stale",
    "bulk_job_progress",
    "bulk_job_work",
    "bulk_jobs_revive",
    "bulk_retry_cancel",
    "bulk_retry_create",
    "bulk_retry_pause",
    "bulk_retry_preview",
    "bulk_retry_resume",
    "bulk_retry_set_threshold",
    "canary_size",
    "failing_connections",
    "item_counts",
    "item_outcomes",
    "sending_lease",
    "throttle_for",
]
