"""Forms of the bulk-retry pages: they validate, the views decide, services act.

Which runs a bulk retry is over (the selection) is read by its own form, in
`console.bulk.selection`; these are the preview's options and the job page's.
"""

from django import forms
from django.conf import settings

from .models import ItemState, JobKind, Outcome


class BulkRetryForm(forms.Form):
    """The preview's choices, and what confirming needs: a reason."""

    # What the job does to each run: retry it, replay its webhook, cancel it.
    kind = forms.ChoiceField(
        choices=JobKind.choices, required=False, initial=JobKind.RETRY, widget=forms.HiddenInput
    )

    include_already_retried = forms.BooleanField(
        required=False,
        label="Include already-retried runs",
        help_text="Retry runs again even if they were retried before.",
    )
    include_skyvern_retrying = forms.BooleanField(
        required=False,
        label="Retry now the runs Skyvern retries itself",
        help_text="Each makes a second run beside Skyvern's own retry. Kept in the audit log.",
    )
    include_completed = forms.BooleanField(
        required=False,
        label="Also retry runs that succeeded",
        help_text="They run again: the customer's forms are submitted again, their webhook "
        "called again. Kept in the audit log.",
    )
    rerun_on_latest = forms.BooleanField(
        required=False,
        label="Rerun the runs behind on their workflow's latest version",
        help_text=(
            "With the same parameters, as a new run of the latest version; "
            "unticked, every run is retried as it is (its own version)."
        ),
    )
    max_steps_override = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        label="Max steps override (optional)",
        help_text="Sent as x-max-steps-override with every retry of this job.",
        widget=forms.NumberInput(attrs={"placeholder": "Skyvern's default"}),
    )
    canary_over = forms.IntegerField(
        required=False,  # empty: the console's default
        min_value=0,
        max_value=1_000_000,
        label="Canary first for jobs of more than (runs)",
        help_text="A bigger job first sends 5 runs (or 5 %), waits for their outcomes, "
        "and goes on only if enough of them succeed.",
    )
    min_success_percent = forms.IntegerField(
        required=False,  # empty: the console's default
        min_value=0,
        max_value=100,
        label="Go on only while at least this share succeeds (%)",
        help_text="Judged on the canary, then on the last finished retries: "
        "below it, the job pauses itself and says why.",
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
        self.fields["canary_over"].initial = settings.BULK_RETRY_CANARY_OVER
        self.fields["min_success_percent"].initial = settings.BULK_RETRY_MIN_SUCCESS_PERCENT

    def clean_kind(self):
        return self.cleaned_data.get("kind") or JobKind.RETRY

    def clean_reason(self):
        reason = self.cleaned_data.get("reason", "")
        if self.confirming and not reason:
            raise forms.ValidationError("Say why these runs are retried; it is kept with the job.")
        return reason


class ThresholdForm(forms.Form):
    """A job's success threshold, changed while it is active."""

    min_success_percent = forms.IntegerField(
        min_value=0,
        max_value=100,
        label="Success threshold (%)",
        error_messages={"required": "Give a percentage from 0 to 100."},
    )


class ItemFilterForm(forms.Form):
    """The job page's items: which state, or which outcome of a sent retry; which page."""

    state = forms.ChoiceField(choices=[("", "All"), *ItemState.choices], required=False)
    outcome = forms.ChoiceField(choices=[("", "All"), *Outcome.choices], required=False)
    page = forms.IntegerField(required=False, min_value=1)


class RetryAnywayForm(forms.Form):
    confirm = forms.BooleanField(
        required=True,
        label="Yes, send this retry even though Skyvern may already have made it.",
        error_messages={"required": "Tick the box to confirm; nothing was sent."},
    )
