"""A connection's base URL can't point the console (and a team's API key) at
the console's own network: refused when saved, and again before every
connection is opened, against the addresses actually connected to.

No real DNS here: `console.teams.hosts.resolve` is replaced by a table.
"""

import socket

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from console.runs.models import Retry
from console.runs.services import run_refresh
from console.skyvern import BadResponse, SkyvernUnreachable
from console.teams import hosts
from console.teams.clients import client_for, forget_session
from console.teams.forms import validate_base_url
from console.teams.hosts import HostNotAllowed, address_refusal
from console.teams.models import Connection
from tests.conftest import KEY_A
from tests.skyvern.conftest import RecordingServer

HTMX = {"HX-Request": "true"}
NEW_KEY = "sk-live-new-key-9f8e7d6c5b4a-QW12"


@pytest.fixture
def dns(monkeypatch):
    """`dns[name] = [addresses]`; a name not in the table doesn't resolve."""
    table: dict[str, list[str]] = {}
    lookups: list[str] = []

    def resolve(host, port, family=socket.AF_UNSPEC):
        lookups.append(host)
        try:
            literal = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            literal = None
        addresses = [host] if literal else table.get(host.lower())
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(hosts, "resolve", resolve)
    table["lookups"] = lookups  # type: ignore[assignment]
    return table


@pytest.fixture(autouse=True)
def production_rules(settings):
    """As in production: no loopback, no private hosts (tests turn loopback on)."""
    settings.SKYVERN_ALLOW_LOOPBACK = False
    settings.SKYVERN_ALLOW_PRIVATE_HOSTS = False


# --- which addresses --------------------------------------------------------------------

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fd12:3456::1": "private",
    "100.64.0.1": "private",  # shared address space (CGNAT)
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "100.100.100.200": "metadata",
    "169.254.170.2": "metadata",
    "::ffff:10.0.0.1": "private",  # IPv4 inside IPv6
    "::ffff:169.254.169.254": "metadata",
    "0.0.0.0": "not a host",  # noqa: S104 - reaches the local machine
    "224.0.0.1": "not a host",
}
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_non_public_addresses_are_refused(address):
    reason = address_refusal(address)
    assert reason is not None and REFUSED[address] in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert address_refusal(address) is None


def test_loopback_only_where_the_demo_allows_it(settings):
    settings.SKYVERN_ALLOW_LOOPBACK = True
    assert address_refusal("127.0.0.1") is None
    assert address_refusal("::1") is None
    assert address_refusal("10.1.2.3") is not None
    assert address_refusal("169.254.169.254") is not None


def test_private_hosts_only_where_the_deployment_allows_them(settings):
    settings.SKYVERN_ALLOW_PRIVATE_HOSTS = True
    for address in ("10.1.2.3", "192.168.1.1", "fd12:3456::1", "100.64.0.1", "169.254.1.1"):
        assert address_refusal(address) is None, address
    # Never a metadata service, whatever the settings.
    settings.SKYVERN_ALLOW_LOOPBACK = True
    for address in (
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "::ffff:169.254.169.254",
    ):
        assert "metadata" in address_refusal(address), address


# --- when a connection is saved ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "addresses", "words"),
    [
        ("https://skyvern.corp.example", ["10.0.0.12"], "resolves to a private address"),
        ("https://skyvern.corp.example", ["93.184.216.34", "10.0.0.12"], "private"),
        ("https://rebind.example", ["169.254.169.254"], "resolves to a cloud metadata address"),
        ("https://v6.example", ["fd00:ec2::254"], "metadata"),
        ("https://ali.example", ["100.100.100.200"], "metadata"),
        ("https://link.example", ["fe80::1"], "link-local"),
        ("https://local.example", ["127.0.0.1"], "loopback"),
        ("https://10.0.0.12", None, "is a private address"),
        ("https://169.254.169.254/latest", None, "is a cloud metadata address"),
        ("https://[fd00:ec2::254]", None, "metadata"),
        ("https://[::ffff:a00:1]", None, "private"),
        ("https://metadata.google.internal", None, "a cloud metadata service"),
        ("https://METADATA.google.internal.", None, "a cloud metadata service"),
        ("https://127.0.0.1:8443", None, "loopback"),
        ("https://localhost", ["127.0.0.1"], "loopback"),
    ],
)
def test_a_base_url_to_a_non_public_host_is_refused(dns, url, addresses, words):
    if addresses:
        dns[url.split("//")[1].split("/")[0].split(":")[0].lower()] = addresses
    with pytest.raises(ValidationError) as caught:
        validate_base_url(url)
    assert words in " ".join(caught.value.messages)


def test_a_base_url_to_a_public_host_is_accepted(dns):
    dns["api.skyvern.com"] = ["93.184.216.34", "2606:4700:4700::1111"]
    assert validate_base_url("https://api.skyvern.com/") == "https://api.skyvern.com"


def test_a_name_that_does_not_resolve_yet_is_accepted_and_checked_on_use(dns):
    assert validate_base_url("https://not-yet.example") == "https://not-yet.example"
    assert "not-yet.example" in dns["lookups"]


def test_private_hosts_are_accepted_where_the_deployment_allows_them(dns, settings):
    settings.SKYVERN_ALLOW_PRIVATE_HOSTS = True
    dns["skyvern.corp.example"] = ["10.0.0.12"]
    assert validate_base_url("https://skyvern.corp.example") == "https://skyvern.corp.example"
    with pytest.raises(ValidationError, match="metadata"):
        validate_base_url("https://169.254.169.254")


def test_the_connection_form_refuses_a_private_host(world, client_as, dns):
    dns["skyvern.corp.example"] = ["192.168.10.4"]
    before = list(Connection.objects.values_list("pk", "base_url"))
    client = client_as(world.admin)

    added = client.post(
        reverse("teams:connection_create", args=["acme"]),
        {"label": "Inside", "base_url": "https://skyvern.corp.example", "api_key": NEW_KEY},
    )
    edited = client.post(
        reverse("teams:connection_edit", args=["acme", world.connection_a.pk]),
        {"label": "Skyvern", "base_url": "https://skyvern.corp.example"},
    )

    for response in (added, edited):
        assert response.status_code == 200
        assert "resolves to a private address" in response.content.decode()
    assert list(Connection.objects.values_list("pk", "base_url")) == before


# --- when a request is made ------------------------------------------------------------------


def point(connection, base_url):
    Connection.objects.filter(pk=connection.pk).update(base_url=base_url)
    connection.refresh_from_db()
    forget_session(connection.pk)


def test_a_host_that_now_resolves_to_a_private_address_is_not_called(world, dns, settings):
    """DNS rebinding: public when saved, private when used. Nothing is sent."""
    dns["skyvern.example"] = ["93.184.216.34"]
    assert validate_base_url("https://skyvern.example") == "https://skyvern.example"
    point(world.connection_a, "https://skyvern.example")

    dns["skyvern.example"] = ["169.254.169.254"]
    with pytest.raises(HostNotAllowed) as caught:
        client_for(world.connection_a).check_key()

    assert isinstance(caught.value, SkyvernUnreachable)
    assert caught.value.run_may_exist is False
    assert "resolves to a cloud metadata address" in str(caught.value)
    assert KEY_A not in str(caught.value)


def test_a_refused_host_fails_a_retry_cleanly_and_sends_nothing(world, dns, client_as, settings):
    settings.SKYVERN_ALLOW_LOOPBACK = True  # only to seed the run from the simulator
    run_id = world.add_run(status="failed")
    settings.SKYVERN_ALLOW_LOOPBACK = False
    dns["skyvern.example"] = ["10.9.8.7"]
    point(world.connection_a, "https://skyvern.example")

    response = client_as(world.operator).post(
        reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"}, headers=HTMX
    )

    assert response.status_code == 200
    assert "resolves to a private address" in response.content.decode()
    retry = Retry.objects.get()
    assert retry.state == "failed"  # certainly not sent: safe to try again
    assert world.simulator.state.retry_count(run_id) == 0


def test_the_test_button_reports_a_refused_host(world, dns, client_as):
    dns["skyvern.example"] = ["172.20.0.5"]
    point(world.connection_a, "https://skyvern.example")

    response = client_as(world.admin).post(
        reverse("teams:connection_test", args=["acme", world.connection_a.pk]), headers=HTMX
    )

    assert response.status_code == 200
    assert "Skyvern unreachable" in response.content.decode()


def test_the_socket_connects_to_the_address_that_was_checked(world, dns, settings):
    """A name is resolved once per connection, checked, and that very address used."""
    settings.SKYVERN_ALLOW_LOOPBACK = True
    port = world.simulator.url.rsplit(":", 1)[1]
    dns["skyvern.test"] = ["127.0.0.1"]
    point(world.connection_a, f"http://skyvern.test:{port}")

    client_for(world.connection_a).check_key()

    assert dns["lookups"].count("skyvern.test") == 1


def test_a_loopback_connection_is_refused_once_loopback_is_off(world, settings):
    """A connection saved for the demo stops working when the setting is off."""
    settings.SKYVERN_ALLOW_LOOPBACK = True
    client_for(world.connection_a).check_key()
    forget_session(world.connection_a.pk)

    settings.SKYVERN_ALLOW_LOOPBACK = False
    with pytest.raises(HostNotAllowed, match="loopback"):
        client_for(world.connection_a).check_key()


def test_a_refused_refresh_leaves_the_cached_run_alone(world, dns, settings):
    settings.SKYVERN_ALLOW_LOOPBACK = True
    run = world.cache_run(world.connection_a, world.simulator.state.add_run(KEY_A, status="failed"))
    settings.SKYVERN_ALLOW_LOOPBACK = False
    dns["skyvern.example"] = ["10.0.0.1"]
    point(world.connection_a, "https://skyvern.example")
    run.refresh_from_db()
    before = (run.status, run.synced_at)

    error = run_refresh(run=run, force=True)

    assert isinstance(error, HostNotAllowed)
    run.refresh_from_db()
    assert (run.status, run.synced_at) == before


# --- the key goes only to the connection's own host ------------------------------------------


@pytest.fixture
def elsewhere():
    server = RecordingServer()
    yield server
    server.stop()


def test_the_key_is_sent_only_to_the_connections_own_host(world, elsewhere, settings, client_as):
    """Skyvern (or whatever answers there) redirects to another host: the
    console doesn't follow, so the other host never sees a request or the key."""
    settings.SKYVERN_ALLOW_LOOPBACK = True
    run_id = world.add_run(status="failed")
    world.simulator.state.configure(redirect_to=elsewhere.url)
    skyvern = client_for(world.connection_a)

    for call in (skyvern.check_key, lambda: skyvern.get_run(run_id)):
        with pytest.raises(BadResponse, match="redirect"):
            call()
    response = client_as(world.operator).post(
        reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"}, headers=HTMX
    )
    tested = client_as(world.admin).post(
        reverse("teams:connection_test", args=["acme", world.connection_a.pk]), headers=HTMX
    )

    assert response.status_code == 200 and tested.status_code == 200
    assert elsewhere.requests == []
    assert world.simulator.state.retry_count(run_id) == 0
