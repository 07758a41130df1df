"""Is this API key the right one for this connection? Asked before a key is saved
and by "Test connection".

Guarantees:
- a key Skyvern refuses (403) is never saved: the connection keeps its old key;
- a key that could not be tested (Skyvern unreachable, slow, failing) is saved
  only when the admin explicitly asks for it, and the connection then says
  that its key is untested until a test succeeds;
- a key that works but sees none of the connection's newest cached runs (a
  key of another Skyvern organisation: its runs answer 404) replaces the old
  one only when the admin confirms that the cached runs will no longer match;
- the key goes only to the connection's base URL, through the same host
  checks as every other call (clients.guarded_session), and never into a
  message, log or audit row.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from console.audit.models import Action, Outcome
from console.audit.services import audit_record
from console.skyvern import (
    KeyRejected,
    RunNotFound,
    SkyvernClient,
    SkyvernError,
    SkyvernServerError,
    SkyvernTimeout,
    SkyvernUnreachable,
)

from .clients import client_for, forget_session, guarded_session
from .models import Connection
from .secrets import ApiKeyUnreadable

#: How many of a connection's newest cached runs are looked up at most.
RUNS_PROBED = 3


class KeyNotSaved(Exception):
    """The key was not saved; `str()` says why, for the admin."""


class KeyRefused(KeyNotSaved):
    """Skyvern refused the key: it can't be saved at all."""


class KeyUntested(KeyNotSaved):
    """The key could not be tested; it may still be saved "without testing"."""


class KeyOfAnotherOrg(KeyNotSaved):
    """The key works but sees none of the connection's cached runs."""

    def __init__(self, message: str, *, cached_runs: int):
        self.cached_runs = cached_runs
        super().__init__(message)


@dataclass(frozen=True)
class KeyTest:
    """What "Test connection" found: `ok`, and a sentence for the admin."""

    ok: bool
    message: str
    #: The test cleared the connection's "key untested".
    cleared_untested: bool = False


def _quotes(text: str, api_key: str) -> bool:
    """Whether `text` holds the key or any 8 characters of it in a row (a
    hostile or broken server may echo what it was sent)."""
    return any(api_key[i : i + 8] in text for i in range(max(1, len(api_key) - 7)))


def _failure(error: SkyvernError, api_key: str) -> str:
    """Why a key could not be tested, as a sentence. A key check only reads,
    so "Skyvern may or may not have acted" never applies."""
    if isinstance(error, SkyvernUnreachable):
        return "Skyvern unreachable — check the base URL, or try again later."
    if isinstance(error, SkyvernTimeout):
        return "No answer from Skyvern in time — it may be overloaded; try again later."
    if isinstance(error, SkyvernServerError):
        return f"Skyvern had an internal error (HTTP {error.status_code}) — try again later."
    if _quotes(str(error), api_key):
        return f"Skyvern answered, but not as expected (HTTP {error.status_code or '?'})."
    return f"Skyvern answered, but not as expected: {error}"


def _refused(error: KeyRejected, api_key: str) -> str:
    """ "Skyvern refused this key (HTTP 403: …)", with Skyvern's words unless
    they quote the key."""
    detail = error.detail or ""
    if not detail or _quotes(detail, api_key):
        return f"Skyvern refused this key (HTTP {error.status_code})."
    return f"Skyvern refused this key (HTTP {error.status_code}: “{detail}”)."


def _cached_run_ids(connection: Connection) -> list[str]:
    return list(
        connection.runs.filter(team_id=connection.team_id, run_id__startswith="wr_")
        .order_by("-created_at", "-id")
        .values_list("run_id", flat=True)[:RUNS_PROBED]
    )


def _sees_cached_runs(client: SkyvernClient, connection: Connection) -> tuple[bool, int]:
    """(whether the key sees at least one of the newest cached runs, how many
    were looked up). True when there is nothing to compare with."""
    run_ids = _cached_run_ids(connection)
    for run_id in run_ids:
        try:
            client.get_run(run_id)
        except RunNotFound:
            continue
        return True, len(run_ids)
    return not run_ids, len(run_ids)


def _other_org_message(connection: Connection, probed: int) -> str:
    cached = connection.runs.count()
    return (
        f"Skyvern accepted this key, but it sees none of the {probed} newest of the "
        f"{cached} cached run{'s' if cached != 1 else ''} of “{connection.label}”: it "
        "belongs to another Skyvern organisation. With it, syncs find none of these runs "
        "and their retries fail."
    )


def key_vet(
    *,
    base_url: str,
    api_key: str,
    connection: Connection | None = None,
    save_untested: bool = False,
    other_org_confirmed: bool = False,
) -> bool:
    """Test `api_key` against Skyvern before it is saved; return whether it was tested.

    Raises KeyRefused when Skyvern refuses it; KeyUntested when it could not
    be tested and `save_untested` is off; KeyOfAnotherOrg when it sees none of
    `connection`'s newest cached runs and `other_org_confirmed` is off. One
    cheap call (one run listed), plus up to RUNS_PROBED run look-ups when the
    connection has cached runs. Nothing is written.
    """
    session = guarded_session()
    client = SkyvernClient(
        base_url,
        api_key,
        connect_timeout=settings.SKYVERN_CONNECT_TIMEOUT,
        read_timeout=settings.SKYVERN_READ_TIMEOUT,
        session=session,
    )
    try:
        client.check_key()
        sees, probed = _sees_cached_runs(client, connection) if connection else (True, 0)
    except KeyRejected as error:
        raise KeyRefused(_refused(error, api_key)) from None
    except SkyvernError as error:
        if save_untested:
            return False
        raise KeyUntested(
            f"{_failure(error, api_key)} The key was not tested, and nothing was saved. Fix the "
            "base URL or try again; or enter the key again and tick “Save without testing”."
        ) from None
    finally:
        session.close()
    if not sees and not other_org_confirmed:
        raise KeyOfAnotherOrg(
            _other_org_message(connection, probed)
            + " Enter the key again and tick the confirmation to use it anyway.",
            cached_runs=connection.runs.count(),
        )
    return True


def connection_key_replace(
    *, connection: Connection, api_key: str, tested: bool, request=None
) -> Connection:
    """Store a vetted key (see key_vet) in place of the old one, recorded once
    in the audit log (masked)."""
    with transaction.atomic():
        connection.set_api_key(api_key)
        connection.key_untested = not tested
        connection.save(
            update_fields=["api_key_encrypted", "api_key_last4", "key_untested", "updated_at"]
        )
        audit_record(
            action=Action.CONNECTION_REPLACE_KEY,
            request=request,
            team=connection.team_id,
            target=connection,
            details={"key": connection.masked_key, "tested": tested},
        )
    forget_session(connection.pk)
    return connection


def connection_key_test(*, connection: Connection, request=None) -> KeyTest:
    """ "Test connection": the cheapest call, then whether the key sees the
    connection's cached runs. A passing test clears "key untested".
    Recorded once in the audit log."""
    ok = False
    try:
        client = client_for(connection)
        client.check_key()
        sees, probed = _sees_cached_runs(client, connection)
        if sees:
            ok, message = True, "OK — Skyvern accepted the key."
        else:
            message = _other_org_message(connection, probed)
    except KeyRejected:
        message = "Key rejected — Skyvern did not accept this API key."
    except SkyvernError as error:
        message = _failure(error, connection.api_key())
    except ApiKeyUnreadable:
        message = "The stored key can't be decrypted with this console's keys; replace the key."
    cleared = ok and connection.key_untested
    if cleared:
        connection.key_untested = False
        Connection.objects.filter(pk=connection.pk).update(key_untested=False)
    audit_record(
        action=Action.CONNECTION_TEST,
        request=request,
        team=connection.team_id,
        outcome=Outcome.OK if ok else Outcome.FAILED,
        target=connection,
        details={"message": message},
    )
    return KeyTest(ok=ok, message=message, cleared_untested=cleared)
