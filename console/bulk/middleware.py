"""Tell people when a bulk job they started has ended.

On the next full page they open (not an htmx fragment, which has no place
for messages), each ended job they started and haven't been told about
becomes one message with a link-free summary; the job is then marked told.
A job has ended once its retries are followed to their end (`followed_at`):
the message says how many succeeded and how many failed again, not how many
were sent.
"""

from django.contrib import messages
from django.utils import timezone

from console.compiled import CompiledQuery

from .models import BulkRetryJob, ItemState, JobKind, JobState
from .services import item_counts, item_outcomes

ENDED = (JobState.FINISHED, JobState.CANCELED)

# Asked on every full page and almost never finding a job: its ids alone, the
# query compiled once.
FIRST_UNANNOUNCED = CompiledQuery(
    lambda user_pk: BulkRetryJob.objects.filter(
        created_by_id=user_pk,
        state__in=ENDED,
        followed_at__isnull=False,
        notified_at__isnull=True,
    ).values_list("pk")[:1],
    -1,
)


class FinishedJobsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            request.method == "GET"
            and user is not None
            and user.is_authenticated
            and not getattr(request, "htmx", False)
        ):
            self.announce_ended_jobs(request, user)
        return self.get_response(request)

    def announce_ended_jobs(self, request, user):
        if not FIRST_UNANNOUNCED.rows(user.pk):
            return
        unannounced = BulkRetryJob.objects.filter(
            created_by=user, state__in=ENDED, followed_at__isnull=False, notified_at__isnull=True
        )
        ended = list(unannounced.select_related("team")[:10])
        for job in ended:
            # Claim the announcement first, so that two open tabs say it once.
            claimed = BulkRetryJob.objects.filter(pk=job.pk, notified_at__isnull=True).update(
                notified_at=timezone.now()
            )
            if not claimed:
                continue
            verb = "finished" if job.state == JobState.FINISHED else "was canceled"
            messages.info(
                request,
                f"Your {job.get_kind_display().lower()} #{job.pk} for {job.team.name} "
                f"{verb}: {_summary(job)}.",
            )


#: Items that were never sent, in the words of the end notice.
NOT_SENT = {ItemState.FAILED: "not retried", ItemState.SKIPPED: "skipped"}


#: What a job that makes no new runs did, in the words of the end notice.
DONE_WORDS = {JobKind.REPLAY_WEBHOOK: "webhooks replayed", JobKind.CANCEL: "runs cancelled"}


def _summary(job) -> str:
    """ "18 succeeded, 6 failed again (24 sent), 2 skipped"; a replay job's
    "2 webhooks replayed, 1 not replayed"."""
    counts = item_counts(job.pk)
    if job.kind in DONE_WORDS:
        done = counts[ItemState.DONE]
        parts = [f"{done} {DONE_WORDS[job.kind]}"] if done else []
        not_sent = {
            ItemState.FAILED: job.not_done_words,
            ItemState.UNKNOWN: "outcome unknown",
            ItemState.SKIPPED: "skipped",
        }
    else:
        sent = job.total != counts[ItemState.SKIPPED]
        parts = [item_outcomes(job.pk).in_words()] if sent else []
        not_sent = NOT_SENT
    parts += [f"{counts[state]} {words}" for state, words in not_sent.items() if counts[state]]
    return ", ".join(parts) or "no runs"
