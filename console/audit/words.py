"""Other apps' words for what the audit log records, which it imports none of.

A bulk job's rows (created, paused, finished…) are about one job, and the bulk
app names its kinds of job ("Bulk retry", "Bulk webhook replay", "Bulk
cancel"). It hands those names over when it is ready (console/bulk/apps.py),
so that a row that stored its job's kind reads "Bulk cancel finished" where
the action's own label can only say "Bulk job finished".
"""

_job_kinds: dict[str, str] = {}


def job_kinds_register(names) -> None:
    """`names`: (kind, words) pairs, as `JobKind.choices`."""
    _job_kinds.update((str(kind), str(words)) for kind, words in names)


def job_kind_words(kind) -> str | None:
    """The words for a kind of bulk job, or None for one not registered."""
    return _job_kinds.get(str(kind)) if kind else None
