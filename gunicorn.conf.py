"""The production web server: `.venv/bin/gunicorn -c gunicorn.conf.py`, run from
the checkout (docs/deploy.md).

Sane defaults for one host behind a TLS proxy; each can be changed from the
environment (below), and any other gunicorn setting with GUNICORN_CMD_ARGS,
e.g. GUNICORN_CMD_ARGS="--max-requests 5000". `kill -HUP` the master process
(`systemctl reload console-web`) to start workers on new code and settings and
stop the old ones once their requests are done.
"""

import os


def _cpus() -> int:
    """CPUs this process may use (a container's or a cgroup's limit included)."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    return len(os.sched_getaffinity(0)) or 1


wsgi_app = "console.wsgi:application"
# Loopback only: the TLS proxy in front (deploy/nginx.conf) is what the network reaches.
bind = os.environ.get("WEB_BIND", "127.0.0.1:8000").split(",")

# Processes, from the CPU count as gunicorn's docs advise, but at most 8;
# each with a few threads, since requests mostly wait on the database or on
# Skyvern. Every thread keeps one database connection (CONN_MAX_AGE), so
# workers x threads counts against PostgreSQL's max_connections (100 by
# default), which a big host's 2 x CPUs + 1 would exhaust.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * _cpus() + 1, 8)))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
# The app is imported by each worker, not by the master, so that a reload
# (SIGHUP) picks up new code.
preload_app = False

# A request waits on Skyvern for at most SKYVERN_READ_TIMEOUT (20 s) per
# call; a worker silent for longer than this is killed and replaced.
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# On stop or reload, running requests get this long to finish.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
# Idle connections from the proxy are kept this long (nginx reuses them).
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))

# To stdout/stderr, where systemd's journal picks them up. The access log
# names the client as the proxy saw it (X-Forwarded-For), the time taken in
# milliseconds and never a header or a body, so no key can reach it; the
# logger class replaces each connection's webhook token in the path.
logger_class = "console.operations.access_log.RedactingLogger"
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
errorlog = os.environ.get("WEB_ERROR_LOG", "-")
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
access_log_format = '%({x-forwarded-for}i)s %(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'
proc_name = "skyvern-console"

# gunicorn's control socket (one per user's home, shared by every gunicorn the
# user runs) isn't used: systemd and signals manage the server.
control_socket_disable = True
