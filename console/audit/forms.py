from django import forms

from .models import Action, AuditEntry

# The teams a row may name, known through the row's own foreign key: the audit
# log, which every app writes to, imports none of them.
Team = AuditEntry.team.field.related_model


class AuditFilterForm(forms.Form):
    """What the audit pages and their CSV export filter by; all optional.

    An invalid value is reported and ignored, never a server error."""

    person = forms.CharField(required=False, max_length=150, label="Person")
    action = forms.ChoiceField(
        required=False, choices=[("", "Any action"), *Action.choices], label="Action"
    )
    target = forms.CharField(
        required=False, max_length=200, label="Target", help_text="Run id, job, connection…"
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    team = forms.ModelChoiceField(
        required=False, queryset=Team.objects.all(), to_field_name="slug", empty_label="Any team"
    )

    def __init__(self, *args, all_teams: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not all_teams:
            del self.fields["team"]

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
            cleaned.pop("until", None)
        return cleaned

    def filters(self) -> dict:
        """The valid, non-empty filters (invalid ones are left out)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {name: value for name, value in data.items() if value not in (None, "")}
