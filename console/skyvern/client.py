"""HTTP client for the Skyvern API endpoints the console uses.

Guarantees:
- the API key is sent only in the `x-api-key` header to `base_url`'s own host
  (redirects are never followed) and appears in no message, repr or exception;
- every failure is raised as one `SkyvernError` subclass, and
  `error.run_may_exist` says whether Skyvern could have acted anyway;
- no request is ever repeated by the client itself: a retry or a run of a
  workflow is not idempotent, so whether to send it again is the caller's
  decision (`cancel_many` sends each id in at most one call).
"""

import email.utils
import re
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from .errors import (
    BadResponse,
    BrowserSessionNotFound,
    ConnectionDropped,
    InvalidBrowserSessionId,
    InvalidRunId,
    InvalidWebhookUrl,
    InvalidWorkflowId,
    KeyRejected,
    NotRetryable,
    RateLimited,
    RunNotFound,
    RunRequestRefused,
    SkyvernBusy,
    SkyvernError,
    SkyvernServerError,
    SkyvernTimeout,
    SkyvernUnreachable,
    TooManyRunIds,
    ValidationFailed,
    WebhookReplayRefused,
    WorkflowNotFound,
)
from .observe import Call, call_report
from .types import (
    ALL_STATUSES,
    BrowserSession,
    BulkCancelResult,
    RunDetail,
    RunSummary,
    WebhookReplay,
    Workflow,
    http_url,
)

WORKFLOW_RUN_ID = re.compile(r"wr_[A-Za-z0-9_-]{1,100}")
# Printable ASCII without spaces: anything else can't travel in a header, and
# requests would quote the offending value (the key) in its error.
API_KEY = re.compile(r"[\x21-\x7e]{1,500}")
WORKFLOW_PERMANENT_ID = re.compile(r"wpid_[A-Za-z0-9_-]{1,100}")
BROWSER_SESSION_ID = re.compile(r"pbs_[A-Za-z0-9_-]{1,100}")
USER_AGENT = "skyvern-support-console/0.1"
#: `POST /v1/runs/cancel` takes at most this many run ids (openapi.json, maxItems).
BULK_CANCEL_LIMIT = 100


def validate_run_id(run_id: Any) -> str:
    """A workflow run id safe to put into a URL path, or InvalidRunId."""
    if not isinstance(run_id, str) or not WORKFLOW_RUN_ID.fullmatch(run_id):
        raise InvalidRunId()
    return run_id


def validate_workflow_id(workflow_permanent_id: Any) -> str:
    """A workflow permanent id safe to put into a URL path, or InvalidWorkflowId."""
    if not isinstance(workflow_permanent_id, str) or not WORKFLOW_PERMANENT_ID.fullmatch(
        workflow_permanent_id
    ):
        raise InvalidWorkflowId()
    return workflow_permanent_id


def validate_browser_session_id(browser_session_id: Any) -> str:
    """A browser session id safe to put into a URL path, or InvalidBrowserSessionId."""
    if not isinstance(browser_session_id, str) or not BROWSER_SESSION_ID.fullmatch(
        browser_session_id
    ):
        raise InvalidBrowserSessionId()
    return browser_session_id


def run_id_batches(run_ids: Iterable[str], size: int = BULK_CANCEL_LIMIT) -> Iterator[list[str]]:
    """The ids in order, each once, in lists of at most `size` (one bulk cancel each)."""
    batch: list[str] = []
    for run_id in dict.fromkeys(run_ids):
        batch.append(run_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _retry_after(response: requests.Response) -> int | None:
    """Retry-After as whole seconds (it may be a number or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, round(when.timestamp() - time.time()))


def _detail(response: requests.Response) -> str | None:
    """Skyvern's own words from an error body ({"detail": ...}), shortened."""
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = "; ".join(
            str(item.get("msg")) for item in detail if isinstance(item, dict) and item.get("msg")
        )
    if detail in (None, ""):
        return None
    return str(detail)[:300]


# Every key handed to a client in this process: what the console's log
# formatter removes from every line (console/operations/logs.py).
_known_keys: set[str] = set()


def known_api_keys() -> frozenset[str]:
    """The API keys this process has made clients with (to keep out of logs)."""
    return frozenset(_known_keys)


class SkyvernClient:
    """One Skyvern organisation, reached with one API key over a pooled session."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 20.0,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        if api_key:
            _known_keys.add(api_key)
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()

    def __repr__(self):
        return f"<SkyvernClient {self.base_url}>"

    # --- the endpoints -------------------------------------------------------

    def retry_run(self, run_id: str, *, max_steps_override: int | None = None) -> RunDetail:
        """Ask Skyvern to retry a finished workflow run; returns the NEW run.

        Every successful call creates a run. Raises NotRetryable (400),
        RunNotFound (404), RateLimited (429) or SkyvernBusy (503 + Retry-After)
        when certainly nothing was created, and SkyvernTimeout,
        ConnectionDropped, SkyvernServerError or BadResponse when a run may
        have been created although no answer says so.
        """
        validate_run_id(run_id)
        headers = {}
        if max_steps_override is not None:
            headers["x-max-steps-override"] = str(int(max_steps_override))
        data = self._request(
            "POST",
            f"/v1/agents/runs/{run_id}/retry",
            headers=headers,
            on_400=NotRetryable,
            operation="retry_run",
        )
        return RunDetail.from_json(data)

    def get_run(self, run_id: str) -> RunDetail:
        """One workflow run in full: app_url, recording_url, screenshots, output."""
        validate_run_id(run_id)
        return RunDetail.from_json(self._request("GET", f"/v1/runs/{run_id}", operation="get_run"))

    def list_runs(
        self,
        *,
        page: int = 1,
        page_size: int = 100,
        statuses: Iterable[str] = (),
        search_key: str | None = None,
        error_code: str | None = None,
    ) -> list[RunSummary]:
        """One page of the organisation's workflow runs, newest first.

        A page past the end is an empty list.
        """
        statuses = list(statuses)
        unknown = [s for s in statuses if s not in ALL_STATUSES]
        if unknown:
            raise ValidationFailed(f"Unknown run status {unknown[0]!r}.")
        params: list[tuple[str, Any]] = [("page", int(page)), ("page_size", int(page_size))]
        params += [("status", status) for status in statuses]
        if search_key:
            params.append(("search_key", search_key))
        if error_code:
            params.append(("error_code", error_code))
        data = self._request("GET", "/v1/agents/runs", params=params, operation="list_runs")
        if not isinstance(data, list):
            raise BadResponse(detail="run list is not a JSON array")
        return [RunSummary.from_json(item) for item in data]

    def retry_webhook(self, run_id: str, *, webhook_url: str | None = None) -> WebhookReplay:
        """Send a run's webhook again, now, once; returns how the receiver took it.

        Only the webhook: no browser work is redone. Without `webhook_url` it
        goes to the run's stored URL, signed as Skyvern's deliveries are
        (so the customer's receiver gets it again). A receiver that refuses it
        or can't be reached is not an error: `WebhookReplay.status_code` /
        `.error` say so. Raises WebhookReplayRefused (400: no URL to send to,
        or one Skyvern won't call), RunNotFound (404), ValidationFailed (422),
        and the transport errors of every call (`run_may_exist`: it may have
        been sent).
        """
        validate_run_id(run_id)
        body: dict[str, Any] = {}
        if webhook_url is not None:
            if not http_url(webhook_url):
                raise InvalidWebhookUrl()
            body["webhook_url"] = webhook_url
        data = self._request(
            "POST",
            f"/v1/runs/{run_id}/retry_webhook",
            json_body=body,
            on_400=WebhookReplayRefused,
            operation="retry_webhook",
        )
        return WebhookReplay.from_json(data)

    def cancel_run(self, run_id: str) -> None:
        """Ask Skyvern to cancel a run that is still going.

        Cancelling is cooperative (the run may do a few more actions first).
        A run that already finished answers the same 200 and stays as it is:
        read the run again to know which happened. Raises RunNotFound (404),
        ValidationFailed (422) and the transport errors.
        """
        validate_run_id(run_id)
        self._request("POST", f"/v1/runs/{run_id}/cancel", operation="cancel_run")

    def cancel_runs(self, run_ids: Sequence[str]) -> BulkCancelResult:
        """Cancel up to 100 runs in one call; which were cancelled, which not.

        More than BULK_CANCEL_LIMIT ids raise TooManyRunIds before anything
        is sent (`cancel_many` splits a longer list). Raises ValidationFailed
        (422) and the transport errors.
        """
        run_ids = list(run_ids)
        if len(run_ids) > BULK_CANCEL_LIMIT:
            raise TooManyRunIds(len(run_ids), BULK_CANCEL_LIMIT)
        for run_id in run_ids:
            validate_run_id(run_id)
        if not run_ids:
            return BulkCancelResult()
        data = self._request(
            "POST", "/v1/runs/cancel", json_body={"run_ids": run_ids}, operation="cancel_runs"
        )
        return BulkCancelResult.from_json(data)

    def cancel_many(self, run_ids: Iterable[str]) -> BulkCancelResult:
        """Cancel any number of runs, 100 a call, in order, each id once.

        Never raises a Skyvern error: the first call that fails stops the
        rest, and the result says what was done, what is unknown (the ids of
        the failed call) and what was never sent, with the error.
        """
        batches = list(run_id_batches(run_ids))
        for run_id in (i for batch in batches for i in batch):
            validate_run_id(run_id)
        result = BulkCancelResult()
        for index, batch in enumerate(batches):
            try:
                result += self.cancel_runs(batch)
            except SkyvernError as exc:
                later = tuple(i for rest in batches[index + 1 :] for i in rest)
                unsent = tuple(batch) if not exc.run_may_exist else ()
                unknown = tuple(batch) if exc.run_may_exist else ()
                return result + BulkCancelResult(
                    unknown=unknown, not_sent=unsent + later, error=exc
                )
        return result

    def get_workflow(self, workflow_permanent_id: str, *, version: int | None = None) -> Workflow:
        """The workflow's current version, or the given version number.

        Raises WorkflowNotFound (404: no such workflow or version for this
        key), ValidationFailed (422) and the transport errors.
        """
        validate_workflow_id(workflow_permanent_id)
        params = [("version", int(version))] if version is not None else None
        data = self._request(
            "GET",
            f"/v1/agents/{workflow_permanent_id}",
            params=params,
            on_404=WorkflowNotFound,
            operation="get_workflow",
        )
        return Workflow.from_json(data)

    def workflow_versions(self, workflow_permanent_id: str) -> list[Workflow]:
        """Every version of the workflow, oldest first (the last is current).

        Raises WorkflowNotFound (404), ValidationFailed (422) and the
        transport errors.
        """
        validate_workflow_id(workflow_permanent_id)
        data = self._request(
            "GET",
            f"/v1/agents/{workflow_permanent_id}/versions",
            on_404=WorkflowNotFound,
            operation="workflow_versions",
        )
        if not isinstance(data, list):
            raise BadResponse(detail="workflow versions are not a JSON array")
        return sorted((Workflow.from_json(item) for item in data), key=lambda w: w.version)

    def run_workflow(
        self,
        workflow_permanent_id: str,
        *,
        parameters: dict | None = None,
        title: str | None = None,
        webhook_url: str | None = None,
        browser_session_id: str | None = None,
        max_steps_override: int | None = None,
    ) -> RunDetail:
        """Start a new run of the workflow's CURRENT version; returns the new run.

        Skyvern's run call takes no version: a run always gets the version
        that is current when Skyvern starts it. Every successful call creates
        a run, and nothing links it to an earlier one. Raises
        RunRequestRefused (400), WorkflowNotFound (404), ValidationFailed
        (422), RateLimited (429) or SkyvernBusy (503 + Retry-After) when
        certainly nothing was created, and SkyvernTimeout, ConnectionDropped,
        SkyvernServerError or BadResponse when a run may have been created.
        """
        validate_workflow_id(workflow_permanent_id)
        if webhook_url is not None and not http_url(webhook_url):
            raise InvalidWebhookUrl()
        body: dict[str, Any] = {"agent_id": workflow_permanent_id}
        if parameters is not None:
            body["parameters"] = parameters
        for key, value in (
            ("title", title),
            ("webhook_url", webhook_url),
            ("browser_session_id", browser_session_id),
        ):
            if value is not None:
                body[key] = value
        headers = {}
        if max_steps_override is not None:
            headers["x-max-steps-override"] = str(int(max_steps_override))
        data = self._request(
            "POST",
            "/v1/run/agents",
            json_body=body,
            headers=headers,
            on_400=RunRequestRefused,
            on_404=WorkflowNotFound,
            operation="run_workflow",
        )
        return RunDetail.from_json(data)

    def get_browser_session(
        self, browser_session_id: str, *, read_timeout: float | None = None
    ) -> BrowserSession:
        """A persistent browser session: is it still open for a run to re-use?

        `read_timeout` (seconds) shortens the wait for an answer, for a
        question asked while a person waits. Raises BrowserSessionNotFound
        (404), ValidationFailed (422) and the transport errors.
        """
        validate_browser_session_id(browser_session_id)
        data = self._request(
            "GET",
            f"/v1/browser_sessions/{browser_session_id}",
            on_404=BrowserSessionNotFound,
            operation="get_browser_session",
            read_timeout=read_timeout,
        )
        return BrowserSession.from_json(data)

    def check_key(self) -> None:
        """The cheapest authenticated call: raises unless the key works."""
        self.list_runs(page=1, page_size=1)

    # --- plumbing ------------------------------------------------------------

    def _check_key(self) -> None:
        if not API_KEY.fullmatch(self._api_key or ""):
            raise KeyRejected(
                "This team's stored API key has characters no API key can have; replace it."
            )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params=None,
        headers: dict | None = None,
        json_body: Any = None,
        on_400: type[SkyvernError] = ValidationFailed,
        on_404: type[SkyvernError] = RunNotFound,
        operation: str,
        read_timeout: float | None = None,
    ) -> Any:
        self._check_key()
        started = time.monotonic()
        outcome = "ok"
        try:
            return self._send(
                method,
                path,
                params=params,
                headers=headers,
                json_body=json_body,
                on_400=on_400,
                on_404=on_404,
                read_timeout=read_timeout,
            )
        except SkyvernError as error:
            outcome = type(error).__name__
            raise
        finally:
            call_report(Call(operation, time.monotonic() - started, outcome))

    def _send(
        self, method, path, *, params, headers, json_body, on_400, on_404, read_timeout=None
    ) -> Any:
        all_headers = {
            "x-api-key": self._api_key,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                params=params,
                headers=all_headers,
                json=json_body,
                timeout=self.timeout if read_timeout is None else (self.timeout[0], read_timeout),
                allow_redirects=False,
            )
        except requests.ConnectTimeout as exc:
            raise SkyvernUnreachable("Skyvern is unreachable (no connection in time).") from exc
        except requests.ReadTimeout as exc:
            raise SkyvernTimeout() from exc
        except requests.exceptions.SSLError as exc:
            if _tls_handshake_failed(exc):
                raise SkyvernUnreachable("Skyvern is unreachable (TLS handshake failed).") from exc
            # TLS broke after the handshake: the request may have been sent.
            raise ConnectionDropped() from exc
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise SkyvernUnreachable() from exc
            raise ConnectionDropped() from exc
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            # Skyvern answered, but its body was cut short or garbled.
            raise ConnectionDropped("Skyvern's answer was cut short.") from exc
        except requests.RequestException as exc:
            raise SkyvernUnreachable() from exc
        return self._parse(response, on_400=on_400, on_404=on_404)

    def _parse(
        self,
        response: requests.Response,
        *,
        on_400: type[SkyvernError],
        on_404: type[SkyvernError] = RunNotFound,
    ) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                raise BadResponse(detail="the body is not JSON") from None
        detail = _detail(response)
        if 300 <= status < 400:
            raise BadResponse(
                "Skyvern redirected the request elsewhere; the console does not follow redirects.",
                detail=detail,
            )
        if status == 400:
            raise on_400(detail=detail)
        if status in (401, 403):
            raise KeyRejected(detail=detail)
        if status == 404:
            raise on_404(detail=detail)
        if status == 422:
            raise ValidationFailed(
                f"Skyvern rejected the request as invalid: {detail}" if detail else None,
                detail=detail,
            )
        if status == 429:
            raise RateLimited(retry_after=_retry_after(response), detail=detail)
        if status == 503 and response.headers.get("Retry-After"):
            raise SkyvernBusy(retry_after=_retry_after(response), detail=detail)
        if status >= 500:
            raise SkyvernServerError(status_code=status, detail=detail)
        error = SkyvernError(f"Skyvern answered HTTP {status}.", detail=detail)
        error.status_code = status
        raise error


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the failure happened before any byte of the request was sent."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        reason = getattr(cause, "reason", None)
        if isinstance(cause, NewConnectionError | NameResolutionError | ConnectTimeoutError):
            return True
        if isinstance(reason, NewConnectionError | NameResolutionError | ConnectTimeoutError):
            return True
        cause = (
            cause.args[0]
            if cause.args and isinstance(cause.args[0], BaseException)
            else cause.__cause__ or cause.__context__
        )
        seen += 1
    return False


def _tls_handshake_failed(exc: BaseException) -> bool:
    """True when a TLS error happened in the handshake, before any request byte.

    The ssl module raises the same exception types during and after the
    handshake, so the frame that raised it is what tells them apart.
    """
    todo: list[BaseException | None] = [exc]
    seen: list[BaseException] = []
    while todo and len(seen) < 20:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        tb = item.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "do_handshake":
                return True
            tb = tb.tb_next
        todo += [item.__cause__, item.__context__]
        todo += [a for a in item.args if isinstance(a, BaseException)]
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return False
