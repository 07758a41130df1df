"""A URL in a failure reason no longer takes the punctuation after it along:
"Bad Gateway (https://x.example/api)" now reads "Bad Gateway (<url>)", not
"Bad Gateway (<url>". Failed runs whose reason holds a URL are grouped again
with the corrected normaliser; the failure-count triggers (0010) move their
counts to the new group as each row is updated."""

import hashlib
import re

from django.db import migrations

# A frozen copy of console/runs/failures.py's normaliser as of this
# migration: a migration must not change when the app's code does.
FAILED_STATUSES = ("failed", "terminated", "timed_out")
_MASKS = [
    (re.compile(r'"[^"]*"|“[^”]*”|‘[^’]*’|`[^`]*`'), "<value>"),
    (re.compile(r"(?<![\w])'[^']*'(?![\w])"), "<value>"),
    (
        re.compile(r"\b(?:https?|wss?|ftp)://[^\s\"'<>]*[^\s\"'<>.,;:!?)\]}]", re.IGNORECASE),
        "<url>",
    ),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (
        re.compile(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE
        ),
        "<uuid>",
    ),
    (re.compile(r"\b(?:[a-z]{1,5}_)+(?:v2_)?[A-Za-z0-9]*\d[A-Za-z0-9]*\b"), "<id>"),
    (re.compile(r"(?<![\w<])[#.][A-Za-z][\w-]*?\d[\w-]*"), "<element>"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(?:[.,:]\d+)*"), "<n>"),
]
_SPACES = re.compile(r"\s+")


def _normalise(text):
    if not text:
        return ""
    text = _SPACES.sub(" ", text).strip()
    for _ in range(10):
        masked = text
        for pattern, mask in _MASKS:
            masked = pattern.sub(mask, masked)
        if masked == text:
            break
        text = masked
    return text[:500].rstrip()


def regroup_reasons_with_urls(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    fields = ["failure_group", "failure_reason_normalised"]
    last = 0
    while True:
        batch = list(
            Run.objects.filter(
                pk__gt=last, status__in=FAILED_STATUSES, failure_reason__contains="://"
            )
            .order_by("pk")
            .only(
                "pk",
                "failure_category",
                "failure_reason",
                "failure_reason_normalised",
                "workflow_permanent_id",
            )[:2000]
        )
        if not batch:
            return
        last = batch[-1].pk
        changed = []
        for run in batch:
            reason = _normalise(run.failure_reason)
            if reason == run.failure_reason_normalised:
                continue
            key = "\x1f".join((run.failure_category, reason, run.workflow_permanent_id))
            run.failure_group = hashlib.sha256(key.encode()).hexdigest()[:16]
            run.failure_reason_normalised = reason
            changed.append(run)
        Run.objects.bulk_update(changed, fields)


class Migration(migrations.Migration):
    dependencies = [("runs", "0011_workflow_versions_and_reruns")]

    operations = [migrations.RunPython(regroup_reasons_with_urls, migrations.RunPython.noop)]
