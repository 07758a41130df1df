import ipaddress
import re
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import IntegrityError, transaction
from django.utils.html import escape
from django.utils.text import slugify

from console.skyvern.client import API_KEY

from .hosts import HostNotAllowed, check_host
from .models import Connection, Role


def validate_base_url(value: str) -> str:
    """HTTPS to a Skyvern host; plain http only to a loopback address, and
    only where SKYVERN_ALLOW_LOOPBACK is on (the demo and tests). The host
    must not be or resolve to a private, link-local or metadata address
    (hosts.py), unless SKYVERN_ALLOW_PRIVATE_HOSTS is on."""
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise forms.ValidationError("Put the API key in its own field, not in the URL.")
    if parts.query or parts.fragment:
        raise forms.ValidationError("The base URL takes no query or fragment.")
    host = (parts.hostname or "").lower()
    if not host:
        raise forms.ValidationError("Enter the Skyvern base URL, e.g. https://api.skyvern.com.")
    if not (
        parts.scheme == "https"
        or (parts.scheme == "http" and settings.SKYVERN_ALLOW_LOOPBACK and _is_loopback(host))
    ):
        raise forms.ValidationError("Skyvern must be reached over https://.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise forms.ValidationError("That port is not a valid port number.") from None
    try:
        check_host(host, port)
    except HostNotAllowed as refusal:
        raise forms.ValidationError(str(refusal)) from None
    except ValueError:  # UnicodeError included: no such host name can exist
        raise forms.ValidationError("That host name is not valid.") from None
    return value.rstrip("/")


# [scheme:]//authority rest, as loosely as a person may type it: also what
# urlsplit can't read ("https://u:key@[bad") and what has no scheme yet
# ("u:key@host", which the URL field reads as https://u:key@host).
_AUTHORITY = re.compile(r"(?P<head>(?:[^:/?#]+:)?//)?(?P<authority>[^/?#]*)(?P<rest>.*)", re.S)


def without_credentials(value: str) -> str:
    """The URL with any user:password@ taken out (they may be an API key)."""
    match = _AUTHORITY.fullmatch(value)
    if match is None or "@" not in match["authority"]:
        return value
    return (match["head"] or "") + match["authority"].rpartition("@")[2] + match["rest"]


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
        # Printable ASCII without spaces: anything else can't travel in a header.
        if value and (len(value) < 8 or not API_KEY.fullmatch(value)):
            raise forms.ValidationError("That doesn't look like a Skyvern API key.")
        return value


LABEL_TAKEN = "This team already has a connection with that label."


class KeyCheckFields:
    """The checkboxes a key test may ask for (keys.key_vet), shown only once it
    asks, and kept on the form while they are ticked."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data.get(self.add_prefix("save_untested")):
            self.offer_save_untested()
        if self.data.get(self.add_prefix("other_org_confirmed")):
            self.offer_other_org_confirmation()

    def offer_save_untested(self) -> None:
        self.fields["save_untested"] = forms.BooleanField(
            required=False,
            label="Save without testing",
            help_text=(
                "The connection then says its key is untested until “Test connection” succeeds."
            ),
        )

    def offer_other_org_confirmation(self, cached_runs: int | None = None) -> None:
        runs = (
            "its cached runs"
            if cached_runs is None
            else (f"its {cached_runs} cached run{'s' if cached_runs != 1 else ''}")
        )
        self.fields["other_org_confirmed"] = forms.BooleanField(
            required=False,
            label=f"Use this key anyway: {runs} will no longer match it",
            help_text="Syncs won't find them and their retries will fail. To start afresh, "
            "remove the connection and add it again instead.",
        )

    def key_check_choices(self) -> dict:
        """keys.key_vet's keyword arguments for what was ticked."""
        return {
            "save_untested": bool(self.cleaned_data.get("save_untested")),
            "other_org_confirmed": bool(self.cleaned_data.get("other_org_confirmed")),
        }


class ConnectionRulesForm(forms.ModelForm):
    """What every form that edits a connection checks: its base URL, and a
    label not taken by another connection of the same team."""

    def clean_label(self):
        label = self.cleaned_data["label"].strip()
        clash = Connection.objects.filter(team=self.instance.team_id, label__iexact=label)
        if clash.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(LABEL_TAKEN)
        return label

    def clean_base_url(self):
        return validate_base_url(self.cleaned_data["base_url"])

    def clean(self):
        cleaned_data = super().clean()
        # A rejected form is shown again with what was typed: never with a key
        # that was pasted into the URL as credentials.
        name = self.add_prefix("base_url")
        typed = self.data.get(name)
        if typed and without_credentials(typed) != typed:
            self.data = self.data.copy()
            self.data[name] = without_credentials(typed)
        return cleaned_data


class ConnectionForm(KeyCheckFields, ConnectionRulesForm):
    api_key = ApiKeyField(label="API key")

    class Meta:
        model = Connection
        fields = ["label", "base_url"]
        labels = {"base_url": "Base URL"}
        help_texts = {"base_url": "https://api.skyvern.com, or your self-hosted Skyvern."}

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.team = team

    def save_unless_label_taken(self) -> Connection | None:
        """Save; or, when someone took the label since it was checked, say so
        on the form (the unique constraint catches it) and return None."""
        try:
            with transaction.atomic():
                return self.save()
        except IntegrityError:
            self.add_error("label", LABEL_TAKEN)
            return None

    def save(self, commit=True):
        self.instance.set_api_key(self.cleaned_data["api_key"])
        return super().save(commit=commit)


class ConnectionEditForm(ConnectionForm):
    """Rename or move a connection without touching its key."""

    api_key = None

    def offer_save_untested(self) -> None:
        pass  # nothing to test: the key stays as it is

    def offer_other_org_confirmation(self, cached_runs: int | None = None) -> None:
        pass

    def save(self, commit=True):
        return forms.ModelForm.save(self, commit=commit)


class ReplaceKeyForm(KeyCheckFields, forms.Form):
    api_key = ApiKeyField(label="New API key")


# --- members and teams -------------------------------------------------------------------


class MemberAddForm(forms.Form):
    login = forms.CharField(label="Username or email", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberInviteForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
    )
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=60,
        required=False,
        label="Short name",
        # Django puts help texts on the page as HTML: escape the placeholder's brackets.
        help_text=escape(
            "Used in the team's addresses (/t/<short name>/); made from the name if empty."
        ),
    )

    def clean(self):
        cleaned = super().clean()
        name = (cleaned.get("name") or "").strip()
        if name and not cleaned.get("slug"):
            cleaned["slug"] = slugify(name)[:60]
            if not cleaned["slug"]:
                self.add_error("slug", "Choose a short name of letters, digits and dashes.")
        return cleaned
