"""The runs page's query: filters, indexed search and keyset pagination.

A page is found by the (created_at, id) of the last run on the previous page,
so page 500 costs what page 1 costs, and no COUNT of the whole history is
ever taken: the total is counted up to a cap only.
"""

import base64
from dataclasses import dataclass
from datetime import datetime

from django import forms
from django.db.models import Prefetch, Q

from .models import COUNTED_RETRY_STATES, Retry, Run, Status

PAGE_SIZE = 50
COUNT_CAP = 1000
# Columns the runs page never reads: a run card doesn't show them, and of the
# run it retried it shows only the id.
LIST_DEFERRED = ("raw", "output", "screenshot_urls", "search_text")


class RunFilterForm(forms.Form):
    status = forms.MultipleChoiceField(
        choices=Status.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        strip=True,
        label="Search",
        widget=forms.TextInput(
            attrs={"placeholder": "Run id or workflow", "type": "search", "autocomplete": "off"}
        ),
    )
    after = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def clean_after(self):
        value = self.cleaned_data["after"]
        if not value:
            return None
        try:
            return decode_cursor(value)
        except ValueError:
            raise forms.ValidationError(
                "That page link is broken; showing the newest runs."
            ) from None


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created, pk = raw.split("|")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("cursor time without zone")
        return when, int(pk)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("bad cursor") from exc


@dataclass
class RunPage:
    runs: list[Run]
    next_cursor: str | None
    total: int
    total_capped: bool
    is_first: bool


def with_card_data(queryset):
    """What a run card shows beyond the run itself, in two extra queries."""
    return queryset.select_related("retried_by", "retried_from").prefetch_related(
        Prefetch(
            "retry_attempts",
            queryset=Retry.objects.filter(state__in=COUNTED_RETRY_STATES)
            .select_related("requested_by", "new_run")
            .order_by("-number"),
            to_attr="counted_retries",
        )
    )


def run_page(queryset, *, statuses=(), search="", after=None) -> RunPage:
    if statuses:
        queryset = queryset.filter(status__in=statuses)
    if search:
        queryset = queryset.search(search)
    # No ORDER BY: any COUNT_CAP + 1 matching rows will do for a capped count.
    total = queryset.order_by().values("pk")[: COUNT_CAP + 1].count()
    page = queryset.order_by("-created_at", "-id")
    if after is not None:
        created_at, pk = after
        # The redundant `created_at <= …` is the index range bound: without it
        # PostgreSQL reads the index from the newest run and filters the OR row
        # by row, so page 200 cost 10,000 skipped entries more than page 1.
        page = page.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk),
            created_at__lte=created_at,
        )
    # A card never shows these; they are the bulk of a cached row (Skyvern's JSON).
    page = page.defer(
        *LIST_DEFERRED,
        *(f"retried_from__{name}" for name in (*LIST_DEFERRED, "failure_reason")),
    )
    runs = list(with_card_data(page)[: PAGE_SIZE + 1])
    next_cursor = encode_cursor(runs[PAGE_SIZE - 1]) if len(runs) > PAGE_SIZE else None
    return RunPage(
        runs=runs[:PAGE_SIZE],
        next_cursor=next_cursor,
        total=min(total, COUNT_CAP),
        total_capped=total > COUNT_CAP,
        is_first=after is None,
    )
