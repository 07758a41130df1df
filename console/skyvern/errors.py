"""Every way a Skyvern call can fail, as the support person needs to hear it.

`run_may_exist` answers the question that matters for a retry: could Skyvern
have created a run even though we got no good answer? Only when it is False
is it safe to send the same retry again.
"""


class SkyvernError(Exception):
    """Base of every Skyvern failure. `str()` is a sentence for the user."""

    default_message = "Skyvern answered with an error."
    #: Could the request have changed something at Skyvern (created a run)?
    run_may_exist = False
    status_code: int | None = None

    def __init__(self, message: str | None = None, *, detail: str | None = None):
        self.detail = detail
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self)


class InvalidRunId(SkyvernError, ValueError):
    default_message = "That is not a Skyvern workflow run id (they look like wr_123…)."


class InvalidWorkflowId(SkyvernError, ValueError):
    default_message = "That is not a Skyvern workflow id (they look like wpid_123…)."


class InvalidWebhookUrl(SkyvernError, ValueError):
    default_message = "A webhook URL must be an http(s) URL with a host."


class InvalidBrowserSessionId(SkyvernError, ValueError):
    default_message = "That is not a Skyvern browser session id (they look like pbs_123…)."


class TooManyRunIds(SkyvernError, ValueError):
    """Skyvern cancels at most `limit` runs a call; nothing was sent."""

    def __init__(self, count: int, limit: int):
        self.count, self.limit = count, limit
        super().__init__(
            f"Skyvern cancels at most {limit} runs at a time; {count} were given."
        )


class NotRetryable(SkyvernError):
    status_code = 400
    default_message = "Skyvern says this run can't be retried (only finished runs can)."


class RunNotFound(SkyvernError):
    status_code = 404
    default_message = "Skyvern has no such run for this team's key."


class WorkflowNotFound(SkyvernError):
    status_code = 404
    default_message = "Skyvern has no such workflow (or version) for this team's key."


class BrowserSessionNotFound(SkyvernError):
    status_code = 404
    default_message = "Skyvern has no such browser session for this team's key."


class WebhookReplayRefused(SkyvernError):
    """400 on a webhook replay: nowhere to send it, or a URL Skyvern won't call."""

    status_code = 400
    default_message = "Skyvern refused to replay the webhook (no URL, or one it won't call)."


class RunRequestRefused(SkyvernError):
    """400 on running a workflow: Skyvern created no run."""

    status_code = 400
    default_message = "Skyvern refused to run the workflow with these parameters."


class ValidationFailed(SkyvernError):
    status_code = 422
    default_message = "Skyvern rejected the request as invalid."


class RateLimited(SkyvernError):
    status_code = 429

    def __init__(self, message: str | None = None, *, retry_after: int | None, detail=None):
        self.retry_after = retry_after
        if message is None:
            message = (
                f"Skyvern is rate limiting this team — try again in {retry_after} s."
                if retry_after is not None
                else "Skyvern is rate limiting this team — try again shortly."
            )
        super().__init__(message, detail=detail)


class SkyvernBusy(SkyvernError):
    """503 with Retry-After: Skyvern says it created no run."""

    status_code = 503

    def __init__(self, message: str | None = None, *, retry_after: int | None, detail=None):
        self.retry_after = retry_after
        if message is None:
            wait = f"in {retry_after} s" if retry_after is not None else "shortly"
            message = f"Skyvern is busy and created no run — try again {wait}."
        super().__init__(message, detail=detail)


class KeyRejected(SkyvernError):
    status_code = 403
    default_message = "Skyvern rejected this team's API key."


class SkyvernServerError(SkyvernError):
    """A 5xx without Retry-After: Skyvern may or may not have acted (`run_may_exist`)."""

    run_may_exist = True
    default_message = "Skyvern had an internal error"

    def __init__(self, message: str | None = None, *, status_code: int, detail=None):
        self.status_code = status_code
        super().__init__(message or f"{self.default_message} (HTTP {status_code}).", detail=detail)


class SkyvernTimeout(SkyvernError):
    """The request was sent but no answer came in time."""

    run_may_exist = True
    default_message = "Skyvern did not answer in time."


class SkyvernUnreachable(SkyvernError):
    """Could not connect at all, so nothing reached Skyvern."""

    default_message = "Skyvern is unreachable."


class ConnectionDropped(SkyvernUnreachable):
    """The connection broke after the request went out."""

    run_may_exist = True
    default_message = "The connection to Skyvern dropped before it answered."


class BadResponse(SkyvernError):
    """Skyvern answered, but not with what the API promises."""

    run_may_exist = True
    default_message = "Skyvern sent an answer the console could not read."
