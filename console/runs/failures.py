"""Failure causes: what makes two failed runs "the same failure".

A failure group is Skyvern's `failure_category` (its most confident guess)
× the failure reason with everything that differs from run to run masked
(ids, numbers, URLs, quoted values, e-mail addresses) × the workflow. The
group is worked out when a run is stored (console/runs/store.py), never when
a page is drawn, so the failure inbox only counts.

Plain functions, no Django: the migration that fills existing runs copies
them rather than importing them.
"""

import hashlib
import re

# The statuses the failure inbox gathers; other runs belong to no group.
FAILED_STATUSES = ("failed", "terminated", "timed_out")

# Column sizes (console/runs/models.py).
CATEGORY_LENGTH = 40
REASON_LENGTH = 500
GROUP_LENGTH = 16

# Each mask is a word in angle brackets that no pattern matches; the patterns
# are applied until nothing changes, so normalising twice gives what
# normalising once gave.
_MASKS = [
    # Anything quoted: a value the site or the person typed.
    (re.compile(r'"[^"]*"|“[^”]*”|‘[^’]*’|`[^`]*`'), "<value>"),
    (re.compile(r"(?<![\w])'[^']*'(?![\w])"), "<value>"),
    # A URL ends before the punctuation that closes the sentence around it:
    # "Bad Gateway (https://x.example/api)." keeps its ")." after "<url>".
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
    # Skyvern's own ids: wr_…, tsk_…, tsk_v2_…, wpid_…, o_… and the like.
    (re.compile(r"\b(?:[a-z]{1,5}_)+(?:v2_)?[A-Za-z0-9]*\d[A-Za-z0-9]*\b"), "<id>"),
    # An element id or selector with a number in it: #btn-42, #row_7, .item-3.
    (re.compile(r"(?<![\w<])[#.][A-Za-z][\w-]*?\d[\w-]*"), "<element>"),
    # Long hex strings (hashes, tokens, object ids).
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.IGNORECASE), "<hex>"),
    # Any other number, with its decimals and digit groups, inside a word too.
    (re.compile(r"\d+(?:[.,:]\d+)*"), "<n>"),
]
_SPACES = re.compile(r"\s+")


def normalise_failure_reason(text: str | None) -> str:
    """`text` with what differs from one run to the next masked, so that
    "element #btn-42 not found" and "element #btn-7 not found" read alike:
    quoted values, URLs, e-mail addresses, uuids, Skyvern ids (wr_…, tsk_…),
    element ids with numbers, long hex strings and numbers. White space is
    folded and the result cut to REASON_LENGTH. Normalising the result again
    changes nothing."""
    if not text:
        return ""
    text = _SPACES.sub(" ", text).strip()
    # A mask can change what surrounds a quote ("1'a'" becomes "<n>'a'"):
    # mask again until nothing changes.
    for _ in range(10):
        masked = text
        for pattern, mask in _MASKS:
            masked = pattern.sub(mask, masked)
        if masked == text:
            break
        text = masked
    return text[:REASON_LENGTH].rstrip()


def first_failure_category(value) -> str:
    """Skyvern's most confident failure category from its `failure_category`
    list of {category, confidence_float, reasoning}; "" when it gave none.
    Entries that are not of that shape are ignored; on equal confidence the
    earlier entry wins."""
    if not isinstance(value, list):
        return ""
    best, best_confidence = "", None
    for entry in value:
        if not isinstance(entry, dict):
            continue
        category = entry.get("category")
        if not isinstance(category, str) or not category.strip():
            continue
        confidence = entry.get("confidence_float")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            confidence = float("-inf")
        if best_confidence is None or confidence > best_confidence:
            best, best_confidence = category.strip()[:CATEGORY_LENGTH], confidence
    return best


def failure_group_key(category: str, reason: str, workflow: str) -> str:
    """The short key of one failure group (category × normalised reason × workflow)."""
    digest = hashlib.sha256("\x1f".join((category, reason, workflow)).encode())
    return digest.hexdigest()[:GROUP_LENGTH]


def failure_fields(*, status: str, failure_reason: str, category: str, workflow: str) -> dict:
    """The failure columns of a run: its category, and for a failed,
    terminated or timed-out run its group and normalised reason ("" otherwise)."""
    if status not in FAILED_STATUSES:
        return {"failure_category": category, "failure_group": "", "failure_reason_normalised": ""}
    reason = normalise_failure_reason(failure_reason)
    return {
        "failure_category": category,
        "failure_group": failure_group_key(category, reason, workflow),
        "failure_reason_normalised": reason,
    }
