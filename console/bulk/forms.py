"""Forms of the bulk-retry pages: they validate, the views decide, services act.

A selection comes from the runs page (card checkboxes, "all on this page" or
"all matching this filter", the filter riding along as `f-*` fields) and is
carried unchanged through the preview into the confirmation, so nothing the
person chose is lost when a form comes back with an error.
"""

from django import forms

from console.runs.listing import RunFilterForm

from .models import ItemState

FILTER_PREFIX = "f"
# Never more ids than this in one form (a page of cards is 50).
MAX_IDS = 5000
MAX_ID = 2**63 - 1  # the largest primary key (a 64-bit integer)


class SelectionForm(forms.Form):
    """Which runs: the ticked ones, the page's, or all that match the filter."""

    SCOPES = {
        "ids": "the selected runs",
        "page": "the runs on the page",
        "filter": "all runs matching the filter",
    }

    scope = forms.ChoiceField(choices=list(SCOPES.items()))
    run = forms.Field(required=False, widget=forms.MultipleHiddenInput)
    page_run = forms.Field(required=False, widget=forms.MultipleHiddenInput)
    # The newest run (by id) when the preview was drawn: runs cached after it
    # are not part of a filter selection, so what was previewed is what is sent.
    upto = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.filter_form = RunFilterForm(data, prefix=FILTER_PREFIX)

    # Ids are any integers here; the view keeps only this team's runs.
    def _ids(self, name):
        values = self.cleaned_data.get(name) or []
        ids = []
        for value in values[: MAX_IDS + 1]:
            try:
                ids.append(int(value))
            except (TypeError, ValueError):
                raise forms.ValidationError("Those run ids are not valid.") from None
            if not -MAX_ID <= ids[-1] <= MAX_ID:  # no database can compare it to an id
                raise forms.ValidationError("Those run ids are not valid.")
        if len(ids) > MAX_IDS:
            raise forms.ValidationError(f"Select at most {MAX_IDS} runs by id.")
        return list(dict.fromkeys(ids))

    def clean_run(self):
        return self._ids("run")

    def clean_page_run(self):
        return self._ids("page_run")

    def clean(self):
        data = super().clean()
        scope = data.get("scope")
        if scope == "ids" and not data.get("run"):
            raise forms.ValidationError(
                "No runs were selected: tick the runs to retry, or choose "
                "“all on this page” or “all matching this filter”."
            )
        if scope == "page" and not data.get("page_run"):
            raise forms.ValidationError("There were no runs on that page.")
        if scope == "filter" and not self.filter_form.is_valid():
            raise forms.ValidationError("The filter is not valid: " + _errors(self.filter_form))
        return data

    def ids_field(self) -> str:
        """The field that holds the chosen runs' ids for this scope: the runs
        page sends its whole page as `page_run`, beside the ticked `run`s."""
        return "page_run" if self.cleaned_data["scope"] == "page" else "run"

    def ids(self) -> list[int]:
        return self.cleaned_data[self.ids_field()]

    def filters(self) -> dict:
        self.filter_form.is_valid()
        return self.filter_form.filters()

    def filter_fields(self) -> list[tuple[str, str]]:
        """The filter as (name, value) pairs for hidden inputs, as posted."""
        prefix = f"{FILTER_PREFIX}-"
        pairs = []
        for name, values in self.data.lists():
            if name.startswith(prefix) and name[len(prefix) :] not in ("after", "since"):
                pairs.extend((name, value) for value in values)
        return pairs


def _errors(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


class BulkRetryForm(forms.Form):
    """The preview's choices, and what confirming needs: a reason."""

    include_already_retried = forms.BooleanField(
        required=False,
        label="Include already-retried runs",
        help_text="Retry runs again even if they were retried before.",
    )
    max_steps_override = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        label="Max steps override (optional)",
        help_text="Sent as x-max-steps-override with every retry of this job.",
        widget=forms.NumberInput(attrs={"placeholder": "Skyvern's default"}),
    )
    reason = forms.CharField(
        required=False,  # required to confirm, not to preview again: see clean()
        max_length=2000,
        strip=True,
        label="Reason",
        help_text="Kept with the job: why these runs are retried (e.g. the incident).",
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "required": True,  # the browser asks too; "Update preview" skips it
                "placeholder": "Customer portal down overnight, fixed 08:40",
            }
        ),
    )

    def __init__(self, *args, confirming: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.confirming = confirming

    def clean_reason(self):
        reason = self.cleaned_data.get("reason", "")
        if self.confirming and not reason:
            raise forms.ValidationError("Say why these runs are retried; it is kept with the job.")
        return reason


class ItemFilterForm(forms.Form):
    """The job page's items: which state, which page."""

    state = forms.ChoiceField(choices=[("", "All"), *ItemState.choices], required=False)
    page = forms.IntegerField(required=False, min_value=1)


class RetryAnywayForm(forms.Form):
    confirm = forms.BooleanField(
        required=True,
        label="Yes, send this retry even though Skyvern may already have made it.",
        error_messages={"required": "Tick the box to confirm; nothing was sent."},
    )
