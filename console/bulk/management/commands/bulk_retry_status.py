"""`manage.py bulk_retry_status [JOB_ID] [--revive]`: how bulk retries stand."""

from django.core.management.base import BaseCommand, CommandError

from console.bulk.models import BulkRetryJob, JobKind, JobState
from console.bulk.services import bulk_job_progress, bulk_jobs_revive, item_outcomes


class Command(BaseCommand):
    help = (
        "Show bulk retry jobs (the active ones, or one in detail); --revive picks up stalled ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("job_id", nargs="?", type=int)
        parser.add_argument(
            "--revive",
            action="store_true",
            help="Book a worker for active jobs whose worker died (as the watchdog does).",
        )

    def handle(self, *args, job_id=None, revive=False, **options):
        if revive:
            revived = bulk_jobs_revive()
            self.stdout.write(f"Revived: {', '.join(map(str, revived)) or 'none'}")
        if job_id is not None:
            job = BulkRetryJob.objects.filter(pk=job_id).select_related("team").first()
            if job is None:
                raise CommandError(f"No bulk retry job #{job_id}.")
            jobs = [job]
        else:
            jobs = list(BulkRetryJob.objects.active().select_related("team"))
            if not jobs:
                self.stdout.write("No active bulk retry jobs.")
        for job in jobs:
            progress = bulk_job_progress(job)
            counts = ", ".join(
                f"{n} {job.item_state_label(state).lower()}"
                for state, n in progress.counts.items()
                if n
            )
            rate = f"{progress.rate:.1f}/min" if progress.rate else "-"
            eta = str(progress.eta).split(".")[0] if progress.eta else "-"
            kind = "" if job.kind == JobKind.RETRY else f"{job.get_kind_display().lower()} "
            self.stdout.write(
                f"#{job.pk} {kind}{job.team.slug} {job.get_state_display().lower()}: "
                f"{progress.done}/{progress.total} done ({counts}); rate {rate}; left {eta}"
            )
            if job.halt_reason and job.state == JobState.PAUSED:
                self.stdout.write(f"  paused by itself: {job.halt_reason}")
            follow = item_outcomes(job.pk)
            if follow.sent:
                still = "" if job.followed_at else "; following the new runs"
                self.stdout.write(f"  retries: {follow.in_words()}{still}")
            if job_id is not None:
                for item in job.items.exclude(error="").select_related("run")[:50]:
                    self.stdout.write(f"  {item.run.run_id} {item.state}: {item.error}")
