"""The console's Prometheus metrics, at `/metrics` (prometheus-client).

Two kinds, so that several gunicorn workers and `db_worker` processes give
one true answer:
- read from the database at scrape time, whichever process answers: retries
  by state, bulk retry items and jobs by state, each connection's sync age,
  key-untested flag and failing sync, webhook refusals (audit rows), the
  task queue, the workers' signs of life. These are rows already, so every
  process sees the same numbers and nothing is lost with a process;
- counted in the process where they happen: Skyvern calls (latency by
  endpoint, errors by kind) and webhook deliveries by answer. With several
  processes, set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by
  the web and worker processes of one host (emptied before they start):
  prometheus-client's multiprocess mode then adds up every process's counts,
  those of processes that have exited included. Without it each process
  reports only its own.
"""

import os

from django.db import DatabaseError
from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from console.audit.models import Action, AuditEntry
from console.background.workers import queue_depth
from console.bulk.models import BulkRetryItem, BulkRetryJob
from console.runs.models import Retry
from console.skyvern.observe import Call, calls_observe

from .health import readiness

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Counted in this process (see the module docstring).
PROCESS = CollectorRegistry(auto_describe=True)
SKYVERN_SECONDS = Histogram(
    "console_skyvern_request_seconds",
    "Time until Skyvern answered (or the call failed), by endpoint.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
    registry=PROCESS,
)
SKYVERN_ERRORS = Counter(
    "console_skyvern_errors",
    "Skyvern calls that failed, by endpoint and kind of failure.",
    ["operation", "error"],
    registry=PROCESS,
)
WEBHOOK_DELIVERIES = Counter(
    "console_webhook_deliveries",
    "Skyvern webhook deliveries answered, by outcome (accepted, refused, "
    "deferred: a database hiccup, Skyvern sends it again) and HTTP status.",
    ["outcome", "status"],
    registry=PROCESS,
)

_stop_counting = None


def skyvern_call_record(call: Call) -> None:
    SKYVERN_SECONDS.labels(call.operation).observe(call.seconds)
    if call.outcome != "ok":
        SKYVERN_ERRORS.labels(call.operation, call.outcome).inc()


def skyvern_calls_count() -> None:
    """Count this process's Skyvern calls (once, however often called)."""
    global _stop_counting
    if _stop_counting is None:
        _stop_counting = calls_observe(skyvern_call_record)


def webhook_delivery_record(status: int) -> None:
    if status < 300:
        outcome = "accepted"
    elif status >= 500:
        outcome = "deferred"
    else:
        outcome = "refused"
    WEBHOOK_DELIVERIES.labels(outcome, str(status)).inc()


class DatabaseCollector:
    """Gauges and counters read from the database at each scrape."""

    def describe(self):
        return []  # not known before the database is read

    def collect(self):
        try:
            families = [*_retries(), *_bulk(), *_deployment(), *_webhook_refusals()]
        except DatabaseError:
            # The in-process counts are still worth a scrape; say what is missing.
            families = [_database_up(False)]
        yield from families


def _retries():
    by_state = GaugeMetricFamily(
        "console_retries",
        "Retries recorded, by team and current state (sending, retried, failed, unknown).",
        labels=["team", "state"],
    )
    intents = CounterMetricFamily(
        "console_retry_intents",
        "Retries ever recorded (each one sent to Skyvern, or being sent), by team.",
        labels=["team"],
    )
    totals: dict[str, int] = {}
    rows = Retry.objects.values_list("run__team__slug", "state").annotate(n=Count("pk"))
    for team, state, n in rows.order_by():
        by_state.add_metric([team, state], n)
        totals[team] = totals.get(team, 0) + n
    for team, n in sorted(totals.items()):
        intents.add_metric([team], n)
    yield by_state
    yield intents


def _bulk():
    items = GaugeMetricFamily(
        "console_bulk_retry_items",
        "Bulk retry items, by team and state.",
        labels=["team", "state"],
    )
    rows = BulkRetryItem.objects.values_list("job__team__slug", "state").annotate(n=Count("pk"))
    for team, state, n in rows.order_by():
        items.add_metric([team, state], n)
    jobs = GaugeMetricFamily(
        "console_bulk_retry_jobs", "Bulk retry jobs, by team and state.", labels=["team", "state"]
    )
    rows = BulkRetryJob.objects.values_list("team__slug", "state").annotate(n=Count("pk"))
    for team, state, n in rows.order_by():
        jobs.add_metric([team, state], n)
    yield items
    yield jobs


def _deployment():
    state = readiness()
    if not state.database:
        raise DatabaseError("the database did not answer")
    yield _database_up(True)
    yield GaugeMetricFamily(
        "console_workers_alive",
        "db_worker processes that showed a sign of life recently.",
        value=state.workers_alive,
    )
    if state.worker_last_seen_age is not None:
        yield GaugeMetricFamily(
            "console_worker_last_seen_age_seconds",
            "Seconds since any db_worker last showed a sign of life.",
            value=state.worker_last_seen_age,
        )
    depth = queue_depth()
    tasks = GaugeMetricFamily(
        "console_tasks",
        "Background tasks: waiting and due (the backlog), waiting for a later start, and running.",
        labels=["state"],
    )
    tasks.add_metric(["due"], depth.due)
    tasks.add_metric(["scheduled"], depth.scheduled)
    tasks.add_metric(["running"], depth.running)
    yield tasks
    age = GaugeMetricFamily(
        "console_sync_age_seconds",
        "Seconds since the connection's last successful sync (absent: never synced).",
        labels=["team", "connection"],
    )
    failing = GaugeMetricFamily(
        "console_sync_failing",
        "1 when the connection's newest sync ended in an error.",
        labels=["team", "connection"],
    )
    untested = GaugeMetricFamily(
        "console_connection_key_untested",
        "1 when the connection's key was saved without testing and has not passed a test since.",
        labels=["team", "connection"],
    )
    for health in state.connections:
        labels = [health.team_slug, health.label]
        if health.last_sync_age is not None:
            age.add_metric(labels, health.last_sync_age)
        failing.add_metric(labels, health.last_sync_failed)
        untested.add_metric(labels, health.key_untested)
    yield age
    yield failing
    yield untested


def _database_up(up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "console_database_up", "1 when the database answered this scrape.", value=up
    )


def _webhook_refusals():
    refusals = CounterMetricFamily(
        "console_webhook_refusals_recorded",
        "Refused webhook deliveries recorded in the audit log (known tokens only), by team.",
        labels=["team"],
    )
    rows = (
        AuditEntry.objects.filter(action=Action.WEBHOOK_REJECTED)
        .values_list("team__slug")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for team, n in rows:
        refusals.add_metric([team or ""], n)
    yield refusals


def metrics_text() -> bytes:
    """Every metric in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every process's counts, this one's included
    else:
        registry.register(PROCESS)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
