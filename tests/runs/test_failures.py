"""What makes two failures the same: normalise_failure_reason and the group key."""

import importlib
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from console.runs.failures import (
    REASON_LENGTH,
    failure_fields,
    failure_group_key,
    first_failure_category,
    normalise_failure_reason,
)


def same(a: str, b: str) -> bool:
    return normalise_failure_reason(a) == normalise_failure_reason(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("element #btn-42 not found", "element #btn-7 not found"),
        ("Element .row_12 is not visible", "Element .row_3 is not visible"),
        ("Run wr_602035243965149958 failed", "Run wr_17 failed"),
        ("Task tsk_v2_9aZ1 timed out", "Task tsk_v2_44 timed out"),
        ("Task tsk_123 timed out", "Task tsk_77abc timed out"),
        (
            "session 3f2b8c1e-9a4d-4c2e-8f1a-0b5c6d7e8f90 expired",
            "session 00000000-0000-4000-8000-000000000000 expired",
        ),
        ("Timed out after 30000 ms", "Timed out after 45000 ms"),
        ("Price 1,299.50 out of range", "Price 7.5 out of range"),
        (
            "Navigation to https://portal.example.com/a?b=1 failed",
            "Navigation to http://x.io/ failed",
        ),
        ('Field "Acme Corp" rejected', 'Field "Globex" rejected'),
        ("Field 'Acme' rejected", "Field 'Globex Billing Ltd' rejected"),
        ("Field “Acme” rejected", "Field “Globex” rejected"),
        ("Login failed for ops@acme.example", "Login failed for jane.doe+x@globex.co.uk"),
        ("hash 9f86d081884c7d659a2feaa0c55ad015 mismatch", "hash 0a1b2c3d4e5f60718293 mismatch"),
        ("HTTP 502 from upstream", "HTTP 504 from upstream"),
        ("Step 3 of 10 failed", "Step 12 of 40 failed"),
        ("  Element   not\nfound ", "Element not found"),
    ],
)
def test_what_differs_from_run_to_run_falls_together(a, b):
    assert same(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("element #btn-42 not found", "element #btn-42 not clickable"),
        ("Login failed: portal rejected the password", "Login failed: account locked"),
        ("Timed out after 30000 ms", "Navigation failed"),
        ("Element not found", "element not found"),  # case is kept: Skyvern's wording
    ],
)
def test_different_causes_stay_apart(a, b):
    assert not same(a, b)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("element #btn-42 not found", "element <element> not found"),
        ("Run wr_602035243965149958 failed", "Run <id> failed"),
        ("Timed out after 30000 ms", "Timed out after <n> ms"),
        ("Go to https://a.example/x then stop", "Go to <url> then stop"),
        ("Bad Gateway (https://api.example/v1/x).", "Bad Gateway (<url>)."),
        ("At https://a.example/x, then https://b.example/y;", "At <url>, then <url>;"),
        ('Value "secret" refused', "Value <value> refused"),
        ("Mail ops@acme.example", "Mail <email>"),
        ("id 3f2b8c1e-9a4d-4c2e-8f1a-0b5c6d7e8f90", "id <uuid>"),
        ("It's not there", "It's not there"),  # an apostrophe is no quote
        ("", ""),
        (None, ""),
    ],
)
def test_what_a_normalised_reason_reads(text, normalised):
    assert normalise_failure_reason(text) == normalised


def test_a_normalised_reason_fits_its_column():
    assert len(normalise_failure_reason("word " * 400)) <= REASON_LENGTH


def test_html_is_left_as_text_for_the_page_to_escape():
    assert normalise_failure_reason("<script>alert(1)</script>") == "<script>alert(<n>)</script>"


reasons = st.text(
    alphabet=st.sampled_from(list("abcXY Z_-#./:@'\"“”`0123456789\n\t,wrtsk")), max_size=80
) | st.text(max_size=80)


@given(reasons)
@example("1'a'")
@example("a \"b 'c'")
@example("x\n'a'")
def test_normalising_twice_changes_nothing(text):
    once = normalise_failure_reason(text)
    assert normalise_failure_reason(once) == once


@given(reasons, st.data())
@example("element #btn-42 not found", None)
def test_other_numbers_make_the_same_reason(text, data):
    if data is None:
        other = "element #btn-7 not found"
    else:
        digits = data.draw(st.lists(st.sampled_from("0123456789"), min_size=10, max_size=10))
        other = re.sub(r"\d", lambda m: digits[int(m.group())], text)
    assert same(text, other)


@given(st.integers(min_value=0, max_value=10**20), st.integers(min_value=0, max_value=10**20))
def test_element_ids_fall_together_whatever_their_number(a, b):
    assert same(f"element #btn-{a} not found", f"element #btn-{b} not found")


@pytest.mark.parametrize(
    ("value", "category"),
    [
        (
            [
                {"category": "PROXY_ERROR", "confidence_float": 0.3, "reasoning": "x"},
                {"category": "AUTH_FAILURE", "confidence_float": 0.9, "reasoning": "y"},
            ],
            "AUTH_FAILURE",
        ),
        (
            [
                {"category": "A", "confidence_float": 0.5},
                {"category": "B", "confidence_float": 0.5},
            ],
            "A",
        ),
        ([{"category": "A"}, {"category": "B", "confidence_float": 0.1}], "B"),
        ([{"category": "A", "confidence_float": True}], "A"),
        ([{"category": 7, "confidence_float": 0.9}, "junk", None], ""),
        (None, ""),
        ("AUTH_FAILURE", ""),
        ([], ""),
        ([{"category": "X" * 100, "confidence_float": 1}], "X" * 40),
    ],
)
def test_the_category_is_skyverns_most_confident(value, category):
    assert first_failure_category(value) == category


def test_a_group_is_category_times_reason_times_workflow():
    key = failure_group_key("ELEMENT_NOT_FOUND", "element <element> not found", "wpid_1")
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert key != failure_group_key("ELEMENT_NOT_FOUND", "element <element> not found", "wpid_2")
    assert key != failure_group_key("UNKNOWN", "element <element> not found", "wpid_1")
    assert key != failure_group_key("ELEMENT_NOT_FOUND", "element gone", "wpid_1")


def test_only_failed_runs_have_a_group():
    failed = failure_fields(
        status="timed_out", failure_reason="after 30 s", category="UNKNOWN", workflow="w"
    )
    assert failed["failure_group"] and failed["failure_reason_normalised"] == "after <n> s"
    completed = failure_fields(
        status="completed", failure_reason="after 30 s", category="UNKNOWN", workflow="w"
    )
    assert completed == {
        "failure_category": "UNKNOWN",
        "failure_group": "",
        "failure_reason_normalised": "",
    }


@given(reasons)
def test_the_migration_fills_rows_as_the_store_writes_them(text):
    """Migration 0012 keeps a frozen copy of the normaliser (0006 one of its
    first version); today it agrees with the store."""
    migration = importlib.import_module("console.runs.migrations.0012_failure_reason_urls")
    assert migration._normalise(text) == normalise_failure_reason(text)
