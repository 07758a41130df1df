"""A bulk retry's selection: which runs, as one value that every step passes on.

As Django admin's bulk actions carry `_selected_action` (the ticked ids) and
`select_across` (everything matching the changelist's filter), a selection is
a list of run ids or "all runs matching this filter", with the filter captured
as the runs page showed it. It is chosen in one of three ways (`Scope`): runs
ticked by hand, the runs page's whole page, or all runs matching its filter.

Three steps write and read it: the runs page (its bulk bar and the cards'
checkboxes), the preview (which carries it forward in hidden inputs) and the
confirmation. All of them use the field names defined here, and one form,
`SelectionForm`, reads it back from any of them: no step can send a field the
next one does not read. Only the team's own runs are ever selected
(`Selection.within`); run ids of another team are left out, and said so.
"""

from dataclasses import dataclass, field, replace
from functools import cached_property
from urllib.parse import urlencode

from django import forms
from django.db import models
from django.db.models import Max
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.utils.html import escape

from console.runs.listing import (
    RunFilterForm,
    describe_filters,
    filtered,
    frozen_filters,
)


class Scope(models.TextChoices):
    """How the runs were chosen; the value is what the forms send and the job keeps."""

    PICKED = "ids", "the selected runs"
    PAGE = "page", "the runs on the page"
    ALL_MATCHING = "filter", "all runs matching the filter"

    @property
    def across(self) -> bool:
        """All runs matching the filter, not a list of ids (admin's `select_across`)."""
        return self is Scope.ALL_MATCHING

    @property
    def whole_page(self) -> bool:
        return self is Scope.PAGE


# The names the runs page, the preview and the confirmation send a selection under.
FORM_ID = "bulk-select"  # the runs page's form; the cards' checkboxes join it by this id
SCOPE_FIELD = "scope"  # the runs page's buttons name the scope
IDS_FIELDS = {
    Scope.PICKED: "run",  # the cards' checkboxes
    # The runs page sends its whole page beside the ticked runs; the button says which counts.
    Scope.PAGE: "page_run",
}
# The newest run (by id) when the preview was drawn: runs cached after it are
# not part of an "all matching" selection, so what was previewed is what is sent.
UPTO_FIELD = "upto"
FILTER_PREFIX = "f"  # the runs page's filters ride along as f-status, f-q, ...
# Where a runs page is, not what it filters: never part of a selection.
NOT_FILTERS = ("after", "since")

# Never more ids than this in one form (a page of cards is 50).
MAX_IDS = 5000
MAX_ID = 2**63 - 1  # the largest primary key (a 64-bit integer)

NOT_VALID = "That selection is not valid."
BAD_IDS = "Those run ids are not valid."
EMPTY = {
    Scope.PICKED: "No runs were selected: tick the runs to retry, or choose "
    "“Select all on this page” or “all matching this filter”.",
    Scope.PAGE: "There were no runs on that page.",
}


def filter_pairs(data, prefix: str = "") -> list[tuple[str, str]]:
    """The runs page's filter in `data` as (name, value) pairs, unprefixed, as
    its query string has them; `prefix` is how they are named in `data`."""
    if not hasattr(data, "lists"):
        return []
    start = f"{prefix}-" if prefix else ""
    pairs = []
    for name, values in data.lists():
        if name.startswith(start) and name[len(start) :] not in NOT_FILTERS:
            pairs.extend((name[len(start) :], value) for value in values)
    return pairs


def _prefixed(pairs) -> list[tuple[str, str]]:
    return [(f"{FILTER_PREFIX}-{name}", value) for name, value in pairs]


@dataclass(frozen=True)
class Selection:
    """Which runs: `ids` (chosen by hand or the runs page's page), or, when
    `across`, every run matching `filter` (the runs page's query, as pairs)
    up to run `upto`. `ignored` counts ids that were not the team's."""

    scope: Scope
    ids: tuple[int, ...] = ()
    filter: tuple[tuple[str, str], ...] = ()
    upto: int | None = None
    ignored: int = field(default=0, compare=False)

    @property
    def across(self) -> bool:
        return self.scope.across

    @property
    def whole_page(self) -> bool:
        return self.scope.whole_page

    def fields(self) -> list[tuple[str, object]]:
        """The selection as form fields, as the next step's `SelectionForm` reads it."""
        fields: list[tuple[str, object]] = [(SCOPE_FIELD, self.scope.value)]
        if self.across:
            fields += _prefixed(self.filter)
            if self.upto is not None:
                fields.append((UPTO_FIELD, self.upto))
        else:
            fields += [(IDS_FIELDS[self.scope], pk) for pk in self.ids]
        return fields

    @cached_property
    def filters(self) -> dict:
        """The filter as keyword arguments of `console.runs.listing.filtered`."""
        form = RunFilterForm(_multi(self.filter))
        form.is_valid()  # SelectionForm refused a selection whose filter is not valid
        return form.filters()

    def within(self, team_runs, *, now=None) -> "Selection":
        """This selection in one team (`team_runs`, already scoped to the person):
        only the team's runs by id, and "all matching" bounded by the team's
        newest run now and its "last …" time ranges turned into the instants
        they cover now, unless the preview already bounded it: the runs
        previewed are the runs a confirmation acts on, however late it comes."""
        if self.across:
            frozen = self.frozen(now=now or timezone.now())
            if frozen.upto is not None:
                return frozen
            newest = team_runs.aggregate(newest=Max("pk"))["newest"]
            return replace(frozen, upto=newest or 0)
        kept = tuple(sorted(team_runs.filter(pk__in=self.ids).values_list("pk", flat=True)))
        return replace(self, ids=kept, ignored=len(self.ids) - len(kept))

    def frozen(self, *, now) -> "Selection":
        """The filter with its time ranges as exact instants (UTC offsets,
        whatever the viewer's zone; see frozen_filters). Frozen twice, the same."""
        times = frozen_filters(self.filters, now=now)
        kept = [(name, value) for name, value in self.filter if name not in TIME_FIELDS]
        kept += [
            (name, times[name].isoformat()) for name in FROZEN_FIELDS if times.get(name) is not None
        ]
        return replace(self, filter=tuple(kept))

    def runs(self, team_runs):
        """The selected runs among `team_runs`, as a queryset (call `within` first)."""
        if self.across:
            return filtered(team_runs, **self.filters).filter(pk__lte=self.upto or 0)
        return team_runs.filter(pk__in=self.ids)

    def describe(self) -> list[tuple[str, str]]:
        """The filter in words, as (label, value) pairs."""
        return describe_filters(self.filters) if self.across else []

    def as_json(self, count: int) -> dict:
        """Kept with the job, for display: how the runs were chosen (`stored_scope`,
        `describe_stored` read it back)."""
        data = {"scope": self.scope.value, "count": count}
        if self.across:
            data["filter"] = {
                name: (value.isoformat() if hasattr(value, "isoformat") else value)
                for name, value in self.filters.items()
                if value
            }
            data["filter"]["statuses"] = list(self.filters.get("statuses") or [])
            data["upto_run_pk"] = self.upto
        else:
            data["run_pks"] = list(self.ids)
        return data


# The filter's time fields; a frozen selection has only the exact ones.
RELATIVE_FIELDS = ("created_within", "finished_within")
FROZEN_FIELDS = ("created_from", "created_to", "finished_from", "finished_to")
TIME_FIELDS = (*RELATIVE_FIELDS, *FROZEN_FIELDS)


def _multi(pairs) -> MultiValueDict:
    data = MultiValueDict()
    for name, value in pairs:
        data.appendlist(name, value)
    return data


def stored_scope(stored: dict) -> Scope:
    """How a job's runs were chosen, from what `Selection.as_json` kept."""
    value = (stored or {}).get("scope")
    return Scope(value) if value in Scope.values else Scope.PICKED


def describe_stored(stored: dict) -> list[tuple[str, str]]:
    """A job's filter in words, from what `Selection.as_json` kept."""
    return describe_filters(dict((stored or {}).get("filter") or {}))


def card_pick_html(pk: int, run_id: str) -> str:
    """A run card's checkbox: it joins the runs page's bulk bar form and ticks
    the run by id. Drawn for every card the runs page draws, so plain
    formatting: the pk is an int, the run id is escaped."""
    return (
        f'<input type="checkbox" class="bulk-pick" form="{FORM_ID}" '
        f'name="{IDS_FIELDS[Scope.PICKED]}" value="{int(pk)}" '
        f'aria-label="Select {escape(run_id)} for bulk retry">'
    )


def runs_page_fields(filter_data, page_runs) -> list[tuple[str, object]]:
    """What the runs page's bulk bar sends besides the ticked runs and the scope
    its buttons name: the filter it shows and the ids of its page's runs."""
    pairs = _prefixed(filter_pairs(filter_data))
    pairs += [(IDS_FIELDS[Scope.PAGE], int(run.pk)) for run in page_runs]
    return pairs


class RunIdsField(forms.Field):
    """Run ids, any integers a database can compare with an id (the selection
    keeps only the team's runs), at most MAX_IDS, each once, in order."""

    widget = forms.MultipleHiddenInput

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)

    def to_python(self, values) -> list[int]:
        ids = []
        for value in (values or [])[: MAX_IDS + 1]:
            try:
                pk = int(value)
            except (TypeError, ValueError):
                raise forms.ValidationError(BAD_IDS) from None
            if not -MAX_ID <= pk <= MAX_ID:  # no database can compare it to an id
                raise forms.ValidationError(BAD_IDS)
            ids.append(pk)
        if len(ids) > MAX_IDS:
            raise forms.ValidationError(f"Select at most {MAX_IDS} runs by id.")
        return list(dict.fromkeys(ids))


class SelectionForm(forms.Form):
    """A selection, from the runs page, the preview or the confirmation alike."""

    scope = forms.ChoiceField(choices=Scope.choices)
    upto = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        for name in IDS_FIELDS.values():
            self.fields[name] = RunIdsField()
        self.filter_form = RunFilterForm(data, prefix=FILTER_PREFIX)

    def clean(self):
        data = super().clean()
        scope = data.get(SCOPE_FIELD)
        ids_field = IDS_FIELDS.get(scope)
        # Ids that are not ids were refused as such: they were not "no runs".
        if ids_field and ids_field not in self.errors and not data.get(ids_field):
            raise forms.ValidationError(EMPTY[scope])
        if scope == Scope.ALL_MATCHING and not self.filter_form.is_valid():
            raise forms.ValidationError("The filter is not valid: " + _errors(self.filter_form))
        return data

    def selection(self) -> Selection:
        """The selection posted (call after is_valid())."""
        scope = Scope(self.cleaned_data[SCOPE_FIELD])
        if scope.across:
            return Selection(
                scope,
                filter=tuple(filter_pairs(self.data, FILTER_PREFIX)),
                upto=self.cleaned_data.get(UPTO_FIELD),
            )
        return Selection(scope, ids=tuple(self.cleaned_data[IDS_FIELDS[scope]]))

    def problems(self) -> list[str]:
        """Why the selection was refused, in words."""
        found = list(self.non_field_errors())
        for name in IDS_FIELDS.values():
            found += [error for error in self.errors.get(name, ()) if error not in found]
        return found or [NOT_VALID]

    def runs_page_query(self) -> str:
        """The runs page's query that this selection came from: its filter."""
        return urlencode(filter_pairs(self.data, FILTER_PREFIX))


def _errors(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)
