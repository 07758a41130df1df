"""Recording the audit log, and reading a target's history.

`audit_record` is the only way a row is written. Services call it once per
action a person (or Skyvern, for webhooks) takes; it stores labels and ids,
never an API key or a password: `details` keys that name a secret are dropped
and long text is cut short.
"""

import ipaddress
import json
from contextvars import ContextVar

from django.core.signals import request_finished, request_started
from django.db.models import Q
from django.utils import timezone

from console.logins import client_ip

from .models import Action, AuditEntry, Outcome

USER_AGENT_MAX = 300
DETAIL_TEXT_MAX = 500
# Keys never kept in `details`, whatever a caller passes.
SECRET_WORDS = ("password", "api_key", "apikey", "secret", "token", "signature", "credential")

# The current request's address and browser, captured when Django starts
# handling it, for services that are not handed the request (their views
# pass only the user). Cleared when the request ends; empty in workers.
_request_meta: ContextVar[dict | None] = ContextVar("audit_request_meta", default=None)
_META_KEYS = ("REMOTE_ADDR", "HTTP_X_FORWARDED_FOR", "HTTP_USER_AGENT")


def _remember_request(sender, environ=None, scope=None, **kwargs):
    if environ is not None:
        _request_meta.set({key: environ.get(key) for key in _META_KEYS if environ.get(key)})
    elif scope is not None:  # ASGI
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        client = scope.get("client") or (None, None)
        meta = {
            "REMOTE_ADDR": client[0],
            "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for"),
            "HTTP_USER_AGENT": headers.get("user-agent"),
        }
        _request_meta.set({k: v for k, v in meta.items() if v})


def _forget_request(sender, **kwargs):
    _request_meta.set(None)


def connect_request_signals() -> None:
    request_started.connect(_remember_request, dispatch_uid="audit_remember_request")
    request_finished.connect(_forget_request, dispatch_uid="audit_forget_request")


class _Meta:
    def __init__(self, meta: dict):
        self.META = meta


def _where_from(request) -> tuple[str | None, str]:
    """(IP address, user agent) of the request, or of the current one."""
    source = request
    if source is None:
        meta = _request_meta.get()
        if not meta:
            return None, ""
        source = _Meta(meta)
    address = client_ip(source)
    try:
        address = str(ipaddress.ip_address((address or "").strip("[]"))) if address else None
    except ValueError:
        address = None
    # Without NULs: PostgreSQL can't store one (a hostile header was a 500).
    agent = (source.META.get("HTTP_USER_AGENT") or "").replace("\x00", "")[:USER_AGENT_MAX]
    return address, agent


def audit_target(obj) -> tuple[str, str, str]:
    """(type, id, label) naming an object in the log — never a key.

    Known by their model's label, so that the audit log, which every app
    writes to, imports none of them.
    """
    if isinstance(obj, tuple):
        kind, ident, label = obj
        return str(kind), str(ident), str(label)
    model = getattr(getattr(obj, "_meta", None), "label_lower", "")
    if model == "runs.run":
        return "run", obj.run_id, obj.workflow_title or obj.run_id
    if model == "bulk.bulkretryjob":
        return "bulk_job", str(obj.pk), obj.title  # "Bulk cancel #13"
    if model == "teams.connection":
        return "connection", str(obj.pk), obj.label
    if model == "teams.membership":
        return "user", str(obj.user_id), obj.user.get_username()
    if model == "teams.team":
        return "team", str(obj.pk), obj.name
    if hasattr(obj, "get_username"):
        return "user", str(obj.pk), obj.get_username()
    raise TypeError(f"No audit target for {type(obj).__name__}")


def _clean(value, depth=0):
    """JSON-safe, secret-free, short: what `details` may hold."""
    if depth > 4:
        return None
    if isinstance(value, dict):
        return {
            str(k)[:60]: _clean(v, depth + 1)
            for k, v in list(value.items())[:30]
            if not any(word in str(k).lower() for word in SECRET_WORDS)
        }
    if isinstance(value, list | tuple | set):
        return [_clean(v, depth + 1) for v in list(value)[:30]]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= DETAIL_TEXT_MAX else text[: DETAIL_TEXT_MAX - 1] + "…"


def audit_record(
    *,
    action: Action | str,
    request=None,
    user=None,
    username: str = "",
    team=None,
    outcome: Outcome | str = Outcome.OK,
    target=None,
    details: dict | None = None,
) -> AuditEntry:
    """Append one row to the audit log, and return it.

    Who: `user`, else the request's signed-in person; `username` names
    someone who is not (a failed sign-in). Where from: the request's client
    address (as django-axes counts it) and user agent — of `request`, or of
    the request being handled in this thread. `target` is a model instance or
    a (type, id, label) tuple; `team` a Team or its id. Never stores a key
    or a password.
    """
    if user is None and request is not None:
        person = getattr(request, "user", None)
        if person is not None and person.is_authenticated:
            user = person
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    address, agent = _where_from(request)
    kind, ident, label = audit_target(target) if target is not None else ("", "", "")
    cleaned = _clean(details or {})
    json.dumps(cleaned)  # fail here, not in the database, on anything odd
    return AuditEntry.objects.create(
        created_at=timezone.now(),
        user=user,
        username=(user.get_username() if user is not None else username or "")[:150],
        team_id=getattr(team, "pk", team),
        action=Action(action),
        outcome=Outcome(outcome),
        target_type=kind[:30],
        target_id=ident[:100],
        target_label=label[:200],
        details=cleaned,
        ip_address=address,
        user_agent=agent,
    )


def audit_entries_for(target, *, limit: int = 50) -> list[AuditEntry]:
    """The newest rows about a run or a bulk job (a job's include its items'
    checks and retries), in the target's own team only."""
    kind, ident, _ = audit_target(target)
    if kind == "run":
        rows = AuditEntry.objects.filter(team=target.team_id, target_type="run", target_id=ident)
    elif kind == "bulk_job":
        rows = AuditEntry.objects.filter(team=target.team_id).filter(
            Q(target_type="bulk_job", target_id=ident) | Q(details__job=target.pk)
        )
    else:
        rows = AuditEntry.objects.filter(target_type=kind, target_id=ident)
    # The rows name who acted by their own username column: no join.
    return list(rows.order_by("-id")[:limit])
