"""`/healthz`, `/readyz` and `/metrics`, answered before everything else.

Probes and scrapes come from load balancers and Prometheus, by IP address,
over plain http inside the network, with no session: first in MIDDLEWARE,
they are answered before the https redirect, the ALLOWED_HOSTS check,
sessions, CSRF, sign-in and two-factor could turn them into a redirect or a
400, and they touch no session or cookie.

- `/healthz`: the process is up (no database).
- `/readyz`: 200 when ready, else 503 (console.operations.health); JSON with
  states, counts and ages only: no team, connection, host or person.
- `/metrics`: Prometheus text (console.operations.metrics), for whoever
  holds METRICS_TOKEN (`Authorization: Bearer …`). Without METRICS_TOKEN,
  only for a client on this machine talking to the web process directly
  (loopback address, and no proxy's forwarding header, since a proxy on this
  machine would make every outside request look local).

It also counts Skyvern's webhook deliveries by the status they were answered
with (the webhook view knows nothing of metrics).
"""

import hmac
import ipaddress
import json

from django.conf import settings
from django.http import HttpResponse

from .health import readiness
from .metrics import CONTENT_TYPE, metrics_text, webhook_delivery_record

HEALTH, READY, METRICS = "/healthz", "/readyz", "/metrics"
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
WEBHOOK_VIEW = "skyvern_webhook"


def _plain(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _json(data: dict, status: int = 200) -> HttpResponse:
    return _plain(HttpResponse(json.dumps(data), content_type="application/json", status=status))


def metrics_allowed(request) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "") or ""
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        )
    if any(request.META.get(header) for header in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


class OperationsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info.rstrip("/")
        if path in (HEALTH, READY, METRICS):
            if request.method not in ("GET", "HEAD"):
                return _plain(HttpResponse(status=405, headers={"Allow": "GET, HEAD"}))
            if path == HEALTH:
                return _json({"status": "ok"})
            if path == READY:
                state = readiness().public()
                response = _json(state, status=200 if state["ready"] else 503)
                # A probe every few seconds would otherwise log an ERROR each
                # time: the 503 is the report (Django's own "already logged" mark).
                response._has_been_logged = True
                return response
            if not metrics_allowed(request):
                return _plain(
                    HttpResponse(
                        "metrics need the bearer token\n",
                        status=401,
                        content_type="text/plain",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                )
            return _plain(HttpResponse(metrics_text(), content_type=CONTENT_TYPE))
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name == WEBHOOK_VIEW:
            webhook_delivery_record(response.status_code)
        return response
