"""The runs page's query: filters, indexed search and keyset pagination.

A page is found by the (created_at, id) of the last run on the previous page,
so page 500 costs what page 1 costs, and no COUNT of the whole history is
ever taken: the total is counted up to a cap only.
"""

import base64
import contextlib
import html
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.core.cache import cache
from django.db import connection, connections
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.safestring import SafeData, mark_safe

from console.compiled import CompiledQuery
from console.teams.access import member_stand_in, scoped_by_membership

from .cards import RUN_COLUMNS, RunCard, cards_of_rows, read_cards
from .models import COUNTED_RETRY_STATES, Retry, RetryState, Run, RunStatusCount, Status

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


class DrawnMomentInput(DrawnInput, forms.TextInput):
    """A date-and-time box (the browser's own picker). A day alone, as older
    links have it, is shown as the first minute (a start) or the last minute
    (an end) of that day; an exact instant, as a bulk selection freezes it, in
    the viewer's zone."""

    input_type = "datetime-local"

    def __init__(self, *, end: bool, attrs=None):
        super().__init__(attrs)
        self.end = end

    def format_value(self, value):
        if not value or not isinstance(value, str):
            return value
        if DAY.fullmatch(value):
            return f"{value}T23:59" if self.end else f"{value}T00:00"
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return timezone.localtime(moment).replace(tzinfo=None).isoformat(timespec="seconds")
        return value


class DrawnSelect(forms.Select):
    """A <select> drawn in Python, like DrawnInput and for the same reason.
    A value that is not one of the choices (an older link's) is kept as an
    option, so that filtering again does not drop it unseen."""

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        chosen = "" if value is None else str(value)
        choices = [(str(v), str(label)) for v, label in self.choices]
        if chosen and chosen not in {v for v, _label in choices}:
            choices.append((chosen, chosen))
        options = "".join(
            f'<option value="{html.escape(v)}"{" selected" if v == chosen else ""}>'
            f"{html.escape(label)}</option>"
            for v, label in choices
        )
        return mark_safe(f"<select{_attributes({'name': name, **attrs})}>{options}</select>")  # noqa: S308


# --- time ranges ----------------------------------------------------------------

# "Last …" ranges: relative to the moment the page is asked for, so a shared
# link means the same span back from whenever it is opened.
WITHIN = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "4h": ("Last 4 hours", timedelta(hours=4)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
}
WITHIN_CHOICES = [("", "Any time"), *((value, label) for value, (label, _span) in WITHIN.items())]

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
DAY_AND_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?"
    r"(Z|[+-]\d{2}:\d{2})?"
)
BAD_MOMENT = "Enter a date (2026-12-06) or a date and time (2026-12-06 14:30)."


@dataclass(frozen=True)
class Moment:
    """What a person typed as one end of a range, as instants: `start` is where
    it begins (for a "from") and `end` where it is over (for a "to", not
    included). A day or a minute typed includes all of it; in the hour that
    happens twice when the clocks go back, both times; an instant with a UTC
    offset (a frozen bulk selection) is exact. None: beyond what can be stored."""

    start: datetime | None
    end: datetime | None


class MomentField(forms.CharField):
    """A date, or a date and time of day, in the viewer's time zone."""

    def __init__(self, **kwargs):
        super().__init__(required=False, max_length=40, strip=True, **kwargs)

    def clean(self, value):
        text = super().clean(value)
        return moment_parse(text) if text else None


def moment_parse(text: str) -> Moment:
    zone = timezone.get_current_timezone()
    if DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise forms.ValidationError(BAD_MOMENT) from None
        after = day + timedelta(days=1) if day < date.max else None
        return Moment(
            start=_utc(datetime.combine(day, time.min, tzinfo=zone)),
            end=_utc(datetime.combine(after, time.min, tzinfo=zone)) if after else None,
        )
    found = DAY_AND_TIME.fullmatch(text)
    if not found:
        raise forms.ValidationError(BAD_MOMENT)
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        raise forms.ValidationError(BAD_MOMENT) from None
    if moment.tzinfo is not None:
        exact = _utc(moment)
        return Moment(start=exact, end=exact)
    unit = (
        timedelta(minutes=1)
        if found[4] is None
        else timedelta(seconds=1)
        if found[5] is None
        else timedelta(microseconds=1)
    )
    earlier, later = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
    if _wall(earlier, zone) != moment and _wall(later, zone) != moment:
        raise forms.ValidationError(
            f"{text.replace('T', ' ')} does not exist in {timezone.get_current_timezone_name()}: "
            "the clocks skipped that hour. Choose a time before or after it."
        )
    end = _utc(later)
    return Moment(start=_utc(earlier), end=end + unit if end and end < _LAST else end)


_LAST = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


def _utc(moment: datetime) -> datetime | None:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: no bound
        return None


def _wall(moment: datetime, zone) -> datetime | None:
    utc = _utc(moment)
    return utc.astimezone(zone).replace(tzinfo=None) if utc else moment.replace(tzinfo=None)


def time_range(within=None, start=None, end=None, *, now=None, frozen=False):
    """The (start, end) instants of one time filter: "last …" and a custom
    range together keep what both allow. `frozen` also ends a "last …" range
    at `now`, for a selection that must not grow as time passes."""
    if within in WITHIN:
        now = now or timezone.now()
        since = now - WITHIN[within][1]
        start = max(start, since) if start else since
        if frozen:
            end = min(end, now) if end else now
    return start, end


# --- retries --------------------------------------------------------------------

RETRY_FILTERS = [
    ("", "Any"),
    ("not_retried", "Not yet retried"),
    ("failed_again", "Retried and failed again"),
]
# How a retry's new run "failed again".
FAILED_AGAIN = [Status.FAILED, Status.TERMINATED, Status.TIMED_OUT]


def _retry_filter(queryset, wanted: str):
    counted = Retry.objects.filter(state__in=COUNTED_RETRY_STATES)
    if wanted == "not_retried":
        return queryset.filter(~Exists(counted.filter(run=OuterRef("pk"))))
    if wanted == "failed_again":
        later = counted.filter(run=OuterRef("run"), number__gt=OuterRef("number"))
        latest_failed = Retry.objects.filter(
            state=RetryState.RETRIED, new_run__status__in=FAILED_AGAIN
        ).filter(~Exists(later))
        return queryset.filter(pk__in=latest_failed.values("run"))
    return queryset


# --- workflows ------------------------------------------------------------------

MAX_WORKFLOWS = 300

# Each next workflow id is one seek in run_team_workflow_newest (a "loose index
# scan"), and so is each one's newest title: a team has tens of workflows and a
# million runs, and a DISTINCT would read them all. SQLite and PostgreSQL alike.
WORKFLOWS_SQL = """
WITH RECURSIVE workflow (wpid) AS (
    SELECT MIN("workflow_permanent_id") FROM "runs_run" WHERE "team_id" = %(team)s
    UNION ALL
    SELECT (
        SELECT MIN("workflow_permanent_id") FROM "runs_run"
        WHERE "team_id" = %(team)s AND "workflow_permanent_id" > workflow.wpid
    ) FROM workflow WHERE workflow.wpid IS NOT NULL
)
SELECT wpid, (
    SELECT "workflow_title" FROM "runs_run"
    WHERE "team_id" = %(team)s AND "workflow_permanent_id" = workflow.wpid
    ORDER BY "created_at" DESC, "id" DESC LIMIT 1
) FROM workflow WHERE wpid IS NOT NULL AND wpid <> '' LIMIT %(limit)s
"""


def team_workflows(team, *, runs_stored: int | None = None) -> list[tuple[str, str]]:
    """(workflow id, title) of each workflow among the team's cached runs,
    by title, in one query (call with a team the person may view).

    With `runs_stored` (how many runs the team has, from its stored counts),
    the list is kept a minute in the per-process cache under that number: a
    workflow's first run makes a new number and so a new list at once; a
    title changed on runs already cached shows within the minute."""
    key = f"team-workflows:{connection.alias}:{team.pk}:{runs_stored}"
    if runs_stored is not None and (kept := cache.get(key)) is not None:
        return kept
    with connection.cursor() as cursor:
        cursor.execute(WORKFLOWS_SQL, {"team": team.pk, "limit": MAX_WORKFLOWS})
        found = cursor.fetchall()
    workflows = sorted(((wpid, title or wpid) for wpid, title in found), key=lambda w: w[1].lower())
    if runs_stored is not None:
        cache.set(key, workflows, WORKFLOWS_KEPT_SECONDS)
    return workflows


WORKFLOWS_KEPT_SECONDS = 60


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
    # The workflow is chosen from the team's (set_workflows); an id or an exact
    # title in a link works too.
    workflow = forms.CharField(
        required=False, max_length=300, strip=True, widget=DrawnSelect(choices=[("", "Any")])
    )
    retry = forms.ChoiceField(
        choices=RETRY_FILTERS, required=False, label="Retries", widget=DrawnSelect
    )
    created_within = forms.ChoiceField(
        choices=WITHIN_CHOICES, required=False, label="Created", widget=DrawnSelect
    )
    created_from = MomentField(label="Created from", widget=DrawnMomentInput(end=False))
    created_to = MomentField(label="Created to", widget=DrawnMomentInput(end=True))
    finished_within = forms.ChoiceField(
        choices=WITHIN_CHOICES, required=False, label="Finished", widget=DrawnSelect
    )
    finished_from = MomentField(label="Finished from", widget=DrawnMomentInput(end=False))
    finished_to = MomentField(label="Finished to", widget=DrawnMomentInput(end=True))
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
        "retry",
        "created_within",
        "created_from",
        "created_to",
        "finished_within",
        "finished_from",
        "finished_to",
        "reason",
        "error_code",
        "category",
        "group",
    )
    # Of those, shown beside the search box rather than under "More filters":
    # what a person reaches for first after an incident ("finished in the last hour").
    AT_HAND = ("finished_within",)
    # The custom ranges: (from, to) fields, in the viewer's time zone.
    RANGES = (("created_from", "created_to"), ("finished_from", "finished_to"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("retry", "created_within", "finished_within"):
            self.fields[name].error_messages["invalid_choice"] = (
                "“%(value)s” is not one of the choices offered."
            )
        zone = timezone.get_current_timezone_name()
        for pair in self.RANGES:
            for name in pair:
                self.fields[name].help_text = zone

    def set_workflows(self, workflows: list[tuple[str, str]]) -> None:
        """Offer these (workflow id, title) to choose from."""
        self.fields["workflow"].widget.choices = [("", "Any"), *workflows]

    def clean(self):
        data = super().clean()
        for start_name, end_name in self.RANGES:
            start, end = data.get(start_name), data.get(end_name)
            if start and end and start.start and end.end and start.start >= end.end:
                self.add_error(end_name, "The end is before the start.")
                data.pop(end_name, None)
        return data

    def filters(self) -> dict:
        """The valid filters as keyword arguments of filtered() (call after is_valid())."""
        data = getattr(self, "cleaned_data", {})
        found = {
            "statuses": data.get("status") or (),
            "search": data.get("q") or "",
            **{name: data.get(name) or None for name in self.MORE_FILTERS},
        }
        for start_name, end_name in self.RANGES:
            start, end = found[start_name], found[end_name]
            found[start_name] = start.start if start else None
            found[end_name] = end.end if end else None
        return found

    @property
    def more_filters_used(self) -> bool:
        return any(self.data.get(name) for name in self.MORE_FILTERS if name not in self.AT_HAND)

    @property
    def more_filter_fields(self) -> list:
        return [self[name] for name in self.MORE_FILTERS if name not in self.AT_HAND]

    @property
    def at_hand_fields(self) -> list:
        return [self[name] for name in self.AT_HAND]

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
    # Each status's count (value, count, capped), when the page read them to
    # know its total (a page without search or filters but status).
    status_counts: list[tuple[str, int, bool]] | None = None


def filtered(
    queryset,
    *,
    statuses=(),
    search="",
    workflow=None,
    retry=None,
    created_within=None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    finished_within=None,
    finished_from: datetime | None = None,
    finished_to: datetime | None = None,
    reason=None,
    error_code=None,
    category=None,
    group=None,
    now: datetime | None = None,
):
    """Runs matching the runs page's filters. A range's `…_from` is where it
    starts and `…_to` where it is over (not included), as instants; `…_within`
    a "last …" range back from `now`. The error code is matched in Skyvern's own
    JSON (`errors` of a run's detail, `failure_category` of a listed run); the
    category is Skyvern's most confident one, the group a failure group of the
    inbox."""
    if statuses:
        queryset = queryset.filter(status__in=statuses)
    if search:
        queryset = queryset.search(search)
    if workflow:
        # A workflow id alone can use the team's workflow index; a title can't.
        by_id = Q(workflow_permanent_id=workflow)
        queryset = queryset.filter(
            by_id if workflow.startswith("wpid_") else by_id | Q(workflow_title__iexact=workflow)
        )
    if retry:
        queryset = _retry_filter(queryset, retry)
    for column, within, start, end in (
        ("created_at", created_within, created_from, created_to),
        ("finished_at", finished_within, finished_from, finished_to),
    ):
        start, end = time_range(within, start, end, now=now)
        if start:
            queryset = queryset.filter(**{f"{column}__gte": start})
        if end:
            queryset = queryset.filter(**{f"{column}__lt": end})
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


def frozen_filters(filters: dict, *, now: datetime) -> dict:
    """`filters` (filtered()'s keyword arguments) with every "last …" range
    turned into the instants it covers at `now`: what a bulk selection acts on
    once previewed, however late it is confirmed."""
    frozen = dict(filters)
    for prefix in ("created", "finished"):
        within = frozen.pop(f"{prefix}_within", None)
        start, end = time_range(
            within, frozen.get(f"{prefix}_from"), frozen.get(f"{prefix}_to"), now=now, frozen=True
        )
        frozen[f"{prefix}_from"], frozen[f"{prefix}_to"] = start, end
    return frozen


# The filters in words (the runs page's summary, a bulk preview and job), by
# filtered()'s keyword arguments.
FILTER_LABELS = {
    "statuses": "Status",
    "search": "Search",
    "workflow": "Workflow",
    "retry": "Retries",
    "created_within": "Created",
    "created_from": "Created from",
    "created_to": "Created before",
    "finished_within": "Finished",
    "finished_from": "Finished from",
    "finished_to": "Finished before",
    "reason": "Failure reason contains",
    "error_code": "Error code",
    "category": "Failure category",
    "group": "Failure group",
}


def describe_filters(filters: dict, *, workflows=()) -> list[tuple[str, str]]:
    """(label, value) of each filter used, times in the viewer's zone."""
    statuses = dict(Status.choices)
    words = {
        "retry": dict(RETRY_FILTERS),
        "created_within": dict(WITHIN_CHOICES),
        "finished_within": dict(WITHIN_CHOICES),
        "workflow": dict(workflows),
    }
    described = []
    for name, label in FILTER_LABELS.items():
        value = filters.get(name)
        if not value:
            continue
        if name == "statuses":
            value = ", ".join(statuses.get(s, s) for s in value)
        elif isinstance(value, str) and name.endswith(("_from", "_to")):
            with contextlib.suppress(ValueError):  # as a job keeps it
                value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            local = timezone.localtime(value) if value.tzinfo else value
            shown = f"{local:%Y-%m-%d %H:%M}"
            if local.second or local.microsecond:
                shown += f":{local:%S}"
            value = f"{shown} ({timezone.get_current_timezone_name()})"
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        value = words.get(name, {}).get(value, value)
        described.append((label, str(value)))
    return described


def capped_count(queryset) -> int:
    """How many rows match, counted up to COUNT_CAP + 1 only."""
    return _counted(queryset).count()


def _counted(queryset):
    # No ORDER BY: any COUNT_CAP + 1 matching rows will do.
    return queryset.order_by().values("pk")[: COUNT_CAP + 1]


def _page_of(queryset, after, order=("-created_at", "-id")):
    page = queryset.order_by(*order)
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
    return page.values_list(*RUN_COLUMNS)[: PAGE_SIZE + 1]


def run_page(queryset, *, statuses=(), search="", after=None, **more_filters) -> RunPage:
    queryset = filtered(queryset, statuses=statuses, search=search, **more_filters)
    total = capped_count(queryset)
    page = _page_of(queryset, after, _newest_first(more_filters))
    runs = cards_of_rows(list(page), using=queryset.db)
    return _run_page(runs, total, after)


def _run_page(runs: list[RunCard], total: int, after) -> RunPage:
    next_cursor = encode_cursor(runs[PAGE_SIZE - 1]) if len(runs) > PAGE_SIZE else None
    return RunPage(
        runs=runs[:PAGE_SIZE],
        next_cursor=next_cursor,
        total=min(total, COUNT_CAP),
        total_capped=total > COUNT_CAP,
        is_first=after is None,
        newest_cursor=encode_cursor(runs[0]) if runs else None,
    )


# A finished-time range this short holds few runs: finding them by the
# finished-time index and putting them newest first is cheaper than walking the
# team's runs newest first until enough finished in it (which SQLite chose,
# reading every failed run of a big team for "failed, finished last 4 hours").
SHORT_FINISHED_RANGE = timedelta(days=1)


def _newest_first(filters: dict) -> tuple:
    start, end = time_range(
        filters.get("finished_within"), filters.get("finished_from"), filters.get("finished_to")
    )
    if start and (end or timezone.now()) - start <= SHORT_FINISHED_RANGE:
        # The same order, written so that no index on created_at can serve it.
        return (Coalesce("created_at", "created_at").desc(), "-id")
    return ("-created_at", "-id")


def team_run_page(
    user, team, *, statuses=(), search="", after=None, stored_counts=None, **more_filters
) -> RunPage:
    """The runs page of `team`, of the runs `user` may see (`restrict()`).

    The page most often asked (a member's, filtered by status at most, any
    page of it) runs the same two queries as run_page(), compiled once per
    shape: building and compiling them cost more than the database's answer
    (docs/performance.md, session 6). Any other page is built as it comes.
    """
    statuses = tuple(dict.fromkeys(statuses))  # a few shapes: each status once
    using = Run.objects.db
    plain = (
        len(statuses) <= len(Status)
        and not search
        and not any(more_filters.values())
        # A cursor's id the database can't hold: the ORM makes that an
        # always-true condition; a kept query would fail.
        and (after is None or _holds_id(after[1], using))
    )
    if not plain or not scoped_by_membership(user):
        queryset = Run.objects.restrict(user).filter(team=team)
        return run_page(queryset, statuses=statuses, search=search, after=after, **more_filters)
    page = _plain_page_query(len(statuses), after is not None)
    values = [user.pk, team.pk, *statuses]
    per_status = stored_counts or stored_status_counts(user, team)
    total = sum(per_status[value] for value in statuses or Status.values)
    runs = cards_of_rows(page.rows(*values, *(after or ()), using=using), using=using)
    return replace(_run_page(runs, total, after), status_counts=_capped(per_status))


def _holds_id(pk: int, using: str) -> bool:
    low, high = connections[using].ops.integer_field_range(Run._meta.pk.get_internal_type())
    return (low is None or pk >= low) and (high is None or pk <= high)


_PLAIN_PAGES = {}

# Stand-ins for the values of a plain page's queries (console/compiled.py).
_USER, _TEAM, _AFTER_PK = -1, -2, -3
_AFTER_TIME = datetime(1900, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _plain_page_query(statuses: int, paged: bool) -> CompiledQuery:
    """The page query of a member's page of a team's runs, with `statuses`
    statuses ticked, past page 1 or not: built by run_page()'s own steps from
    stand-ins. It takes the person, the team and the statuses; past page 1
    also the (created_at, id) it starts after."""
    if (statuses, paged) not in _PLAIN_PAGES:
        stand_ins = [_USER, _TEAM, *(f"stand-in status {number}" for number in range(statuses))]
        after = (_AFTER_TIME, _AFTER_PK) if paged else ()

        def page(user_pk, team_pk, *rest):
            queryset = Run.objects.restrict(member_stand_in(user_pk)).filter(team_id=team_pk)
            matching = filtered(queryset, statuses=rest[:statuses])
            return _page_of(matching, rest[statuses:] if paged else None)

        _PLAIN_PAGES[statuses, paged] = CompiledQuery(page, *stand_ins, *after)
    return _PLAIN_PAGES[statuses, paged]


# A member's stored counts of a team's runs per status: none for a team they
# are not in.
_MEMBER_STATUS_COUNTS = CompiledQuery(
    lambda user_pk, team_pk: (
        RunStatusCount.objects.restrict(member_stand_in(user_pk))
        .filter(team_id=team_pk)
        .values_list("status", "count")
    ),
    _USER,
    _TEAM,
)


def stored_status_counts(user, team) -> dict[str, int]:
    """How many of the team's runs the person may see have each status, read
    from the counts the database keeps (RunStatusCount), not by counting."""
    if scoped_by_membership(user):
        rows = _MEMBER_STATUS_COUNTS.rows(user.pk, team.pk, using=RunStatusCount.objects.db)
    else:
        rows = (
            RunStatusCount.objects.restrict(user).filter(team=team).values_list("status", "count")
        )
    stored = dict(rows)
    return {value: stored.get(value, 0) for value in Status.values}


@dataclass
class RunUpdates:
    """What changed since the runs page was drawn: runs newer than its newest
    card, and the capped counts per status under the same search."""

    new_runs: list[RunCard]
    newest_cursor: str | None
    total: int
    total_capped: bool
    status_counts: list[tuple[str, int, bool]]


def run_updates(user, team, *, statuses=(), search="", since=None, **more_filters) -> RunUpdates:
    """What the runs page's poll brings: the runs newer than the page's newest
    (`since`) under its search and filters, and the counts per status."""
    searched = filtered(Run.objects.restrict(user).filter(team=team), search=search, **more_filters)
    matching = filtered(searched, statuses=statuses)
    new_runs = []
    if since is not None:
        created_at, pk = since
        newer = matching.filter(
            Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=pk),
            created_at__gte=created_at,
        )
        new_runs = read_cards(newer.order_by("-created_at", "-id"), PAGE_SIZE)
    per_status = _team_per_status(user, team, search=search, **more_filters)
    counts = _capped(per_status)
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


def _per_status(searched) -> dict[str, int]:
    """Each status's count, up to COUNT_CAP + 1. When no more than COUNT_CAP
    runs match in all, none reaches the cap: one GROUP BY over those few
    gives every count exactly, where nine capped counts would each walk the
    search or filter again."""
    if capped_count(searched) <= COUNT_CAP:
        grouped = dict(searched.order_by().values_list("status").annotate(runs=Count("pk")))
        return {value: grouped.get(value, 0) for value in Status.values}
    return {value: capped_count(searched.filter(status=value)) for value in Status.values}


def _capped(per_status: dict[str, int]) -> list[tuple[str, int, bool]]:
    return [
        (value, min(count, COUNT_CAP), count > COUNT_CAP) for value, count in per_status.items()
    ]


def team_status_counts(user, team, *, search="", **more_filters) -> list[tuple[str, int, bool]]:
    """The runs page's counts per status (value, count, capped), drawn with the
    page so that they show without JavaScript, and polled (run_updates): each
    capped the same way. The status filter leaves them as they are. Without
    search or another filter, they are the stored counts."""
    return _capped(_team_per_status(user, team, search=search, **more_filters))


def _team_per_status(user, team, *, search="", **more_filters) -> dict[str, int]:
    if search or any(more_filters.values()):
        searched = filtered(
            Run.objects.restrict(user).filter(team=team), search=search, **more_filters
        )
        return _per_status(searched)
    return stored_status_counts(user, team)
