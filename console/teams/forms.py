import ipaddress
from urllib.parse import urlsplit

from django import forms
from django.conf import settings

from .models import Connection


def validate_base_url(value: str) -> str:
    """HTTPS to a Skyvern host; plain http only to a loopback address, and
    only where SKYVERN_ALLOW_LOOPBACK is on (the demo and tests)."""
    parts = urlsplit(value)
    if parts.username or parts.password:
        raise forms.ValidationError("Put the API key in its own field, not in the URL.")
    if parts.query or parts.fragment:
        raise forms.ValidationError("The base URL takes no query or fragment.")
    host = (parts.hostname or "").lower()
    if not host:
        raise forms.ValidationError("Enter the Skyvern base URL, e.g. https://api.skyvern.com.")
    if parts.scheme == "https":
        return value.rstrip("/")
    if parts.scheme == "http" and settings.SKYVERN_ALLOW_LOOPBACK and _is_loopback(host):
        return value.rstrip("/")
    raise forms.ValidationError("Skyvern must be reached over https://.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiKeyField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault(
            "widget",
            forms.PasswordInput(
                render_value=False,
                attrs={
                    "autocomplete": "off",
                    "spellcheck": "false",
                },
            ),
        )
        kwargs.setdefault("max_length", 500)
        kwargs.setdefault("strip", True)
        kwargs.setdefault(
            "help_text", "Stored encrypted; after saving only its last 4 characters are shown."
        )
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if value and (len(value) < 8 or any(c.isspace() for c in value)):
            raise forms.ValidationError("That doesn't look like a Skyvern API key.")
        return value


class ConnectionForm(forms.ModelForm):
    api_key = ApiKeyField(label="API key")

    class Meta:
        model = Connection
        fields = ["label", "base_url"]
        labels = {"base_url": "Base URL"}
        help_texts = {"base_url": "https://api.skyvern.com, or your self-hosted Skyvern."}

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.instance.team = team

    def clean_base_url(self):
        return validate_base_url(self.cleaned_data["base_url"])

    def clean_label(self):
        label = self.cleaned_data["label"].strip()
        clash = Connection.objects.filter(team=self.team, label__iexact=label)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("This team already has a connection with that label.")
        return label

    def save(self, commit=True):
        self.instance.set_api_key(self.cleaned_data["api_key"])
        return super().save(commit=commit)


class ConnectionEditForm(ConnectionForm):
    """Rename or move a connection without touching its key."""

    api_key = None

    def save(self, commit=True):
        return forms.ModelForm.save(self, commit=commit)


class ReplaceKeyForm(forms.Form):
    api_key = ApiKeyField(label="New API key")
