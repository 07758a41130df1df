"""What the bulk retry modules share: the refusal support staff see when the
console won't do something, the check that the user is an operator in the
team, the audit row about a bulk retry job, and the package's logger."""

import logging

from django.core.exceptions import PermissionDenied

from console.teams.access import can_retry
from console.teams.models import Team

# One logger for the whole package, named as before the split into modules,
# so log lines and any logging set up for it stay the same.
log = logging.getLogger("console.bulk.services")


class BulkRetryRefused(Exception):
    """The console won't do this; the message says why, for the user."""


def _audit(action, *, job, user=None, request=None, target=None, outcome="ok", **details):
    """One audit row about `job` (or one of its runs, as `target`)."""
    from console.audit.services import audit_record

    if target is not None:
        details = {"job": job.pk, **details}
    audit_record(
        action=action,
        request=request,
        user=user,
        team=job.team_id,
        outcome=outcome,
        target=job if target is None else target,
        details=details,
    )


def _require_operator(team: Team, user) -> None:
    if not can_retry(team.role_of(user)):
        raise PermissionDenied(f"This needs the operator role in {team.name}.")
