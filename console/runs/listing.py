"""The runs page's query: filters, indexed search and keyset pagination.

A page is found by the (created_at, id) of the last run on the previous page,
so page 500 costs what page 1 costs, and no COUNT of the whole history is
ever taken: the total is counted up to a cap only.
"""

import base64
import html
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.db.models import Q
from django.utils import timezone
from django.utils.safestring import SafeData, mark_safe

from .cards import RunCard, read_cards
from .models import Status

PAGE_SIZE = 50
COUNT_CAP = 1000


class DrawnInput:
    """Django's own <input> markup, drawn in Python rather than through the
    widget templates or flatatt()'s format_html per attribute: the runs page
    draws six on every view, and those were a measurable part of it
    (docs/performance.md, change 11). tests/runs/test_run_list.py holds the
    two to the same markup."""

    def _render(self, template_name, context, renderer=None):
        widget = context["widget"]
        attrs = {"type": widget["type"], "name": widget["name"]}
        if widget["value"] is not None:
            attrs["value"] = widget["value"]
        attrs.update(widget["attrs"])
        return mark_safe(f"<input{_attributes(attrs)}>")  # noqa: S308 (escaped below)


def _attributes(attrs: dict) -> str:
    """What flatatt() writes (True: the bare name; False, None: nothing),
    every value escaped unless already safe, as conditional_escape would."""
    return "".join(
        f" {name}"
        if value is True
        else f' {name}="{value if isinstance(value, SafeData) else html.escape(str(value))}"'
        for name, value in attrs.items()
        if value is not None and value is not False
    )


class DrawnTextInput(DrawnInput, forms.TextInput):
    pass


class DrawnDateInput(DrawnInput, forms.DateInput):
    pass


class RunFilterForm(forms.Form):
    status = forms.MultipleChoiceField(
        choices=Status.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        strip=True,
        label="Search",
        widget=DrawnTextInput(
            attrs={"placeholder": "Run id or workflow", "type": "search", "autocomplete": "off"}
        ),
    )
    # "More filters" (also what a bulk retry selects by); see filtered().
    workflow = forms.CharField(
        required=False,
        max_length=300,
        strip=True,
        widget=DrawnTextInput(attrs={"placeholder": "Workflow id or exact title"}),
    )
    created_from = forms.DateField(
        required=False, label="Created from", widget=DrawnDateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="Created to", widget=DrawnDateInput(attrs={"type": "date"})
    )
    reason = forms.CharField(
        required=False,
        max_length=200,
        strip=True,
        label="Failure reason contains",
        widget=DrawnTextInput(attrs={"placeholder": "e.g. invalid credentials"}),
    )
    error_code = forms.CharField(
        required=False,
        max_length=100,
        strip=True,
        label="Error code",
        widget=DrawnTextInput(attrs={"placeholder": "e.g. LOGIN_FAILED"}),
    )
    # The failure inbox links here with these two (console/runs/inbox.py).
    category = forms.CharField(
        required=False,
        max_length=40,
        strip=True,
        label="Failure category",
        widget=DrawnTextInput(attrs={"placeholder": "e.g. ELEMENT_NOT_FOUND"}),
    )
    group = forms.RegexField(
        regex=r"^[0-9a-f]{16}$",
        required=False,
        strip=True,
        label="Failure group",
        error_messages={"invalid": "That is not a failure group from the failure inbox."},
        widget=DrawnTextInput(attrs={"placeholder": "A group of the failure inbox"}),
    )
    after = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    since = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    MORE_FILTERS = (
        "workflow",
        "created_from",
        "created_to",
        "reason",
        "error_code",
        "category",
        "group",
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end date is before the start date.")
            data.pop("created_to", None)
        return data

    def filters(self) -> dict:
        """The valid filters as keyword arguments of filtered() (call after is_valid())."""
        data = getattr(self, "cleaned_data", {})
        return {
            "statuses": data.get("status") or (),
            "search": data.get("q") or "",
            **{name: data.get(name) or None for name in self.MORE_FILTERS},
        }

    @property
    def more_filters_used(self) -> bool:
        return any(self.data.get(name) for name in self.MORE_FILTERS)

    @property
    def more_filter_fields(self) -> list:
        return [self[name] for name in self.MORE_FILTERS]

    @property
    def filter_problems(self) -> list[str]:
        """Each filter left out because it was not valid, in words: the
        fields' own errors sit in the form, which an htmx filter doesn't
        redraw (a broken page link has its own message)."""
        return [
            f"{self[name].label}: {error}"
            for name, errors in self.errors.items()
            if name in self.fields and name not in ("after", "since")
            for error in errors
        ]

    @property
    def status_options(self) -> list[tuple[str, str, bool]]:
        """(value, label, ticked) of each status, for the checkboxes the
        template draws itself rather than through nine widget templates on
        every view (docs/performance.md, change 15)."""
        ticked = set(self["status"].value() or ())
        return [(value, label, value in ticked) for value, label in Status.choices]

    def clean_after(self):
        return self._cursor("after")

    def clean_since(self):
        return self._cursor("since")

    def _cursor(self, name):
        value = self.cleaned_data[name]
        if not value:
            return None
        try:
            return decode_cursor(value)
        except ValueError:
            raise forms.ValidationError(
                "That page link is broken; showing the newest runs."
            ) from None


def encode_cursor(run: RunCard) -> str:
    raw = f"{run.created_at.isoformat()}|{run.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created, pk = raw.split("|")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("cursor time without zone")
        # In UTC, as stored: a time that can't be (year 1 at +05:00) is no cursor.
        return when.astimezone(UTC), int(pk)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError("bad cursor") from exc


@dataclass
class RunPage:
    runs: list[RunCard]
    next_cursor: str | None
    total: int
    total_capped: bool
    is_first: bool
    newest_cursor: str | None = None


def filtered(
    queryset,
    *,
    statuses=(),
    search="",
    workflow=None,
    created_from: date | None = None,
    created_to: date | None = None,
    reason=None,
    error_code=None,
    category=None,
    group=None,
):
    """Runs matching the runs page's filters. Dates are whole UTC days, both
    ends included; the error code is matched in Skyvern's own JSON (`errors` of
    a run's detail, `failure_category` of a listed run); the category is
    Skyvern's most confident one, the group a failure group of the inbox."""
    if statuses:
        queryset = queryset.filter(status__in=statuses)
    if search:
        queryset = queryset.search(search)
    if workflow:
        queryset = queryset.filter(
            Q(workflow_permanent_id=workflow) | Q(workflow_title__iexact=workflow)
        )
    if created_from:
        queryset = queryset.filter(created_at__gte=_day_start(created_from))
    if created_to and created_to < date.max:  # up to the last day there is: no bound
        queryset = queryset.filter(created_at__lt=_day_start(created_to + timedelta(days=1)))
    if reason:
        queryset = queryset.filter(failure_reason__icontains=reason)
    if error_code:
        quoted = f'"{error_code}"'
        queryset = queryset.filter(
            Q(raw__errors__icontains=quoted) | Q(raw__failure_category__icontains=quoted)
        )
    if category:
        queryset = queryset.filter(failure_category=category)
    if group:
        # Stated as the index's own condition, so that it is used.
        queryset = queryset.exclude(failure_group="").filter(failure_group=group)
    return queryset


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def capped_count(queryset) -> int:
    """How many rows match, counted up to COUNT_CAP + 1 only."""
    # No ORDER BY: any COUNT_CAP + 1 matching rows will do.
    return queryset.order_by().values("pk")[: COUNT_CAP + 1].count()


def run_page(queryset, *, statuses=(), search="", after=None, **more_filters) -> RunPage:
    queryset = filtered(queryset, statuses=statuses, search=search, **more_filters)
    total = capped_count(queryset)
    page = queryset.order_by("-created_at", "-id")
    if after is not None:
        created_at, pk = after
        # The redundant `created_at <= …` is the index range bound: without it
        # PostgreSQL reads the index from the newest run and filters the OR row
        # by row, so a deep page costs more than page 1 (docs/performance.md,
        # change 3).
        page = page.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk),
            created_at__lte=created_at,
        )
    runs = read_cards(page, PAGE_SIZE + 1)
    next_cursor = encode_cursor(runs[PAGE_SIZE - 1]) if len(runs) > PAGE_SIZE else None
    return RunPage(
        runs=runs[:PAGE_SIZE],
        next_cursor=next_cursor,
        total=min(total, COUNT_CAP),
        total_capped=total > COUNT_CAP,
        is_first=after is None,
        newest_cursor=encode_cursor(runs[0]) if runs else None,
    )


@dataclass
class RunUpdates:
    """What changed since the runs page was drawn: runs newer than its newest
    card, and the capped counts per status under the same search."""

    new_runs: list[RunCard]
    newest_cursor: str | None
    total: int
    total_capped: bool
    status_counts: list[tuple[str, int, bool]]


def run_updates(queryset, *, statuses=(), search="", since=None, **more_filters) -> RunUpdates:
    searched = filtered(queryset, search=search, **more_filters)
    matching = filtered(searched, statuses=statuses)
    new_runs = []
    if since is not None:
        created_at, pk = since
        newer = matching.filter(
            Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=pk),
            created_at__gte=created_at,
        )
        new_runs = read_cards(newer.order_by("-created_at", "-id"), PAGE_SIZE)
    per_status = {
        value: capped_count(searched.filter(status=value)) for value, _label in Status.choices
    }
    counts = [
        (value, min(count, COUNT_CAP), count > COUNT_CAP) for value, count in per_status.items()
    ]
    # The total is the sum of the counts of the statuses shown: exact while none
    # of them reached the cap, and over the cap whenever one did.
    total = sum(per_status.get(value, 0) for value in statuses or per_status)
    return RunUpdates(
        new_runs=new_runs,
        newest_cursor=encode_cursor(new_runs[0]) if new_runs else None,
        total=min(total, COUNT_CAP),
        total_capped=total > COUNT_CAP,
        status_counts=counts,
    )
