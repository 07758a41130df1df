"""`manage.py doctor`: does this deployment stand as the README says it
should, and what to fix when not.

Each check gives findings: a *problem* (the command exits non-zero) or a
*warning* (worth a look, exits zero), each with what to do; a check that
passes says so. Checks that read the database are skipped, as one problem,
when the database is away.
"""

import os
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count
from django.utils import timezone

from console.audit.models import Action, AuditEntry
from console.background.workers import worker_last_seen

from .health import (
    DEFAULT_READY_WORKER_SECONDS,
    age_seconds,
    connections_health,
    database_reachable,
    ready_worker_seconds,
    sync_stale_seconds,
)

OK, WARNING, PROBLEM = "ok", "warning", "problem"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
#: Refused webhook deliveries within this window are reported.
REFUSALS_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # OK, WARNING or PROBLEM
    message: str
    fix: str = ""


def _ok(check, message):
    return Finding(check, OK, message)


def check_secrets() -> list[Finding]:
    found = []
    for name, what in (
        ("SECRET_KEY", "sessions and password-reset links depend on it"),
        ("CONSOLE_ENCRYPTION_KEYS", "every stored API key is encrypted with it"),
    ):
        if os.environ.get(name, "").strip():
            found.append(_ok("secrets", f"{name} comes from the environment"))
        else:
            found.append(
                Finding(
                    "secrets",
                    PROBLEM,
                    f"{name} is not set: it falls back to a file under {settings.VAR_DIR} "
                    f"({what}: lose that directory and they are gone)",
                    f"set {name} in the environment (README, 'Running in production')",
                )
            )
    return found


def check_debug() -> list[Finding]:
    if settings.DEBUG:
        return [
            Finding(
                "debug",
                PROBLEM,
                "DEBUG is on: error pages show settings and code",
                "unset DEBUG",
            )
        ]
    return [_ok("debug", "DEBUG is off")]


def check_https() -> list[Finding]:
    if not settings.CONSOLE_HTTPS:
        return [
            Finding(
                "https",
                PROBLEM,
                "CONSOLE_HTTPS is off: cookies may travel over plain http, no HSTS",
                "set CONSOLE_HTTPS=1 and serve the console behind a TLS proxy",
            )
        ]
    return [_ok("https", "CONSOLE_HTTPS is on")]


def check_allowed_hosts() -> list[Finding]:
    hosts = [host.strip().lower() for host in settings.ALLOWED_HOSTS]
    if any(host == "*" for host in hosts):
        return [
            Finding(
                "allowed hosts",
                PROBLEM,
                "ALLOWED_HOSTS allows any host",
                "set ALLOWED_HOSTS to the console's own name, e.g. console.example.com",
            )
        ]
    if not [host for host in hosts if host not in LOCAL_HOSTS]:
        return [
            Finding(
                "allowed hosts",
                PROBLEM,
                "ALLOWED_HOSTS names only this machine: nobody else can reach the console",
                "set ALLOWED_HOSTS to the name people use, e.g. console.example.com",
            )
        ]
    return [_ok("allowed hosts", f"ALLOWED_HOSTS: {', '.join(settings.ALLOWED_HOSTS)}")]


def check_metrics_token() -> list[Finding]:
    if not getattr(settings, "METRICS_TOKEN", ""):
        return [
            Finding(
                "metrics",
                WARNING,
                "METRICS_TOKEN is not set: /metrics answers only on this machine, "
                "to requests that came through no proxy",
                "set METRICS_TOKEN and give Prometheus the same token (bearer)",
            )
        ]
    return [_ok("metrics", "/metrics needs METRICS_TOKEN")]


def check_static() -> list[Finding]:
    missing = []
    for finder in finders.get_finders():
        for path, _storage in finder.list(["CVS", ".*", "*~"]):
            if not staticfiles_storage.exists(path):
                missing.append(path)
    if missing:
        return [
            Finding(
                "static files",
                PROBLEM,
                f"{len(missing)} static file(s) not collected into {settings.STATIC_ROOT} "
                f"(e.g. {missing[0]})",
                "run `manage.py collectstatic --noinput` after each upgrade",
            )
        ]
    return [_ok("static files", f"collected in {settings.STATIC_ROOT}")]


def check_migrations() -> list[Finding]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:3])
        return [
            Finding(
                "migrations",
                PROBLEM,
                f"{len(plan)} migration(s) not applied ({names}…)"
                if len(plan) > 3
                else f"{len(plan)} migration(s) not applied ({names})",
                "run `manage.py migrate`",
            )
        ]
    return [_ok("migrations", "every migration is applied")]


def check_worker() -> list[Finding]:
    within = ready_worker_seconds() or DEFAULT_READY_WORKER_SECONDS
    age = age_seconds(worker_last_seen(), timezone.now())
    if age is None:
        return [
            Finding(
                "worker",
                PROBLEM,
                "no `manage.py db_worker` has ever run: nothing syncs, no bulk retry is sent",
                "start one or more `manage.py db_worker` processes (README, 'Running in "
                "production')",
            )
        ]
    if age > within:
        return [
            Finding(
                "worker",
                PROBLEM,
                f"no db_worker seen for {age:.0f} s (expected within {within} s)",
                "start `manage.py db_worker`, or look at why it stopped (its log)",
            )
        ]
    return [_ok("worker", f"a db_worker was seen {age:.0f} s ago")]


def check_connections() -> list[Finding]:
    found = []
    stale = sync_stale_seconds()
    every = connections_health()
    for health in every:
        name = f"{health.team_slug} / {health.label}"
        if health.last_sync_age is None:
            found.append(
                Finding(
                    "sync",
                    PROBLEM,
                    f"{name}: never synced successfully",
                    "check the worker runs and the connection's key and URL "
                    "(Connections page, 'Test connection')",
                )
            )
        elif health.last_sync_age > stale:
            found.append(
                Finding(
                    "sync",
                    PROBLEM,
                    f"{name}: last synced {health.last_sync_age / 60:.0f} min ago "
                    f"(every {settings.SYNC_INTERVAL_SECONDS} s expected)",
                    "check the worker runs; the runs page says why the last sync failed",
                )
            )
        elif health.last_sync_failed:
            found.append(
                Finding(
                    "sync",
                    WARNING,
                    f"{name}: the newest sync failed",
                    "the runs page says why; 'Test connection' on the Connections page",
                )
            )
        else:
            found.append(_ok("sync", f"{name}: synced {health.last_sync_age:.0f} s ago"))
        if health.key_untested:
            found.append(
                Finding(
                    "keys",
                    WARNING,
                    f"{name}: the API key was saved without testing",
                    "press 'Test connection' on the team's Connections page",
                )
            )
    if not every:
        found.append(
            Finding(
                "sync", WARNING, "no Skyvern connection yet", "add one on a team's Connections page"
            )
        )
    return found


def check_webhook_refusals() -> list[Finding]:
    since = timezone.now() - REFUSALS_WINDOW
    rows = (
        AuditEntry.objects.filter(action=Action.WEBHOOK_REJECTED, created_at__gte=since)
        .values_list("team__slug")
        .annotate(n=Count("pk"))
        .order_by("team__slug")
    )
    found = [
        Finding(
            "webhooks",
            WARNING,
            f"{team}: {n} webhook deliveries refused in the last 24 h",
            "the team's Connections page lists them with the reason (a wrong key "
            "or URL on the customer's workflow?)",
        )
        for team, n in rows
    ]
    return found or [_ok("webhooks", "no webhook delivery refused in the last 24 h")]


SETTINGS_CHECKS = [
    check_secrets,
    check_debug,
    check_https,
    check_allowed_hosts,
    check_metrics_token,
    check_static,
]
DATABASE_CHECKS = [check_migrations, check_worker, check_connections, check_webhook_refusals]


def doctor_checks() -> list[Finding]:
    """Every finding about this deployment, settings first."""
    found = [finding for check in SETTINGS_CHECKS for finding in check()]
    if not database_reachable():
        found.append(
            Finding(
                "database",
                PROBLEM,
                f"the database ({connection.settings_dict.get('ENGINE', '').rsplit('.', 1)[-1]}) "
                "cannot be reached; its checks were skipped",
                "check DATABASE_URL and that the server runs",
            )
        )
        return found
    found.append(_ok("database", "the database answers"))
    for check in DATABASE_CHECKS:
        try:
            found += check()
        except DatabaseError as error:
            found.append(
                Finding(check.__name__, PROBLEM, f"could not be read: {type(error).__name__}")
            )
    return found
