"""A small client for the Skyvern HTTP API, independent of Django.

Everything the console asks of Skyvern goes through `SkyvernClient`; every way
a call can fail is one of the exceptions in `errors`, each with a message a
support person can act on.
"""

from .client import (
    BULK_CANCEL_LIMIT,
    SkyvernClient,
    run_id_batches,
    validate_run_id,
    validate_workflow_id,
)
from .errors import (
    BadResponse,
    ConnectionDropped,
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
from .types import (
    TERMINAL_STATUSES,
    BulkCancelResult,
    RunAttempt,
    RunDetail,
    RunSummary,
    WebhookReplay,
    Workflow,
    WorkflowParameterInfo,
)

__all__ = [
    "BULK_CANCEL_LIMIT",
    "TERMINAL_STATUSES",
    "BadResponse",
    "BulkCancelResult",
    "ConnectionDropped",
    "InvalidRunId",
    "InvalidWebhookUrl",
    "InvalidWorkflowId",
    "KeyRejected",
    "NotRetryable",
    "RateLimited",
    "RunAttempt",
    "RunDetail",
    "RunNotFound",
    "RunRequestRefused",
    "RunSummary",
    "SkyvernBusy",
    "SkyvernClient",
    "SkyvernError",
    "SkyvernServerError",
    "SkyvernTimeout",
    "SkyvernUnreachable",
    "TooManyRunIds",
    "ValidationFailed",
    "WebhookReplay",
    "WebhookReplayRefused",
    "Workflow",
    "WorkflowNotFound",
    "WorkflowParameterInfo",
    "run_id_batches",
    "validate_run_id",
    "validate_workflow_id",
]
