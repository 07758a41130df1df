"""A small client for the Skyvern HTTP API, independent of Django.

Everything the console asks of Skyvern goes through `SkyvernClient`; every way
a call can fail is one of the exceptions in `errors`, each with a message a
support person can act on.
"""

from .client import SkyvernClient, validate_run_id
from .errors import (
    BadResponse,
    ConnectionDropped,
    InvalidRunId,
    KeyRejected,
    NotRetryable,
    RateLimited,
    RunNotFound,
    SkyvernBusy,
    SkyvernError,
    SkyvernServerError,
    SkyvernTimeout,
    SkyvernUnreachable,
    ValidationFailed,
)
from .types import TERMINAL_STATUSES, RunDetail, RunSummary

__all__ = [
    "TERMINAL_STATUSES",
    "BadResponse",
    "ConnectionDropped",
    "InvalidRunId",
    "KeyRejected",
    "NotRetryable",
    "RateLimited",
    "RunDetail",
    "RunNotFound",
    "RunSummary",
    "SkyvernBusy",
    "SkyvernClient",
    "SkyvernError",
    "SkyvernServerError",
    "SkyvernTimeout",
    "SkyvernUnreachable",
    "ValidationFailed",
    "validate_run_id",
]
