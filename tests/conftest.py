"""Shared fixtures: the Skyvern simulator, two teams with one person per role.

Team A ("Acme") and team B ("Globex") each have a connection to the
simulator with their own key (their own Skyvern organisation).
"""

import ipaddress
import socket
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches

from console.oidc.config import forget_discovery
from console.simulator import SimulatorServer
from console.skyvern import SkyvernClient
from console.teams import hosts
from console.teams.models import Connection, Membership, Role, Team
from tests.oidc_provider.provider import start_provider

KEY_A = "sk-test-acme-0123456789abcdef-A1B2"
KEY_B = "sk-test-globex-fedcba9876543210-Z9Y8"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def test_settings(settings):
    """The simulator is plain http on loopback, as in the demo; and `world`
    creates six people per test, for whom the default hasher costs ~0.5 s each.
    Each test starts with an empty per-process cache: on SQLite, tests reuse
    primary keys, which some cache keys hold (a team's workflow list)."""
    settings.SKYVERN_ALLOW_LOOPBACK = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    caches["default"].clear()


@pytest.fixture(scope="session")
def simulator_server():
    """One Skyvern simulator for the whole test session, on a free port."""
    server = SimulatorServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def simulator(simulator_server):
    """The simulator, emptied and with every fault knob off for each test."""
    simulator_server.state.reset()
    yield simulator_server
    simulator_server.state.reset()


@dataclass
class World:
    """Everything a test about teams needs, by the names support staff use."""

    simulator: SimulatorServer
    team_a: Team
    team_b: Team
    connection_a: Connection
    connection_b: Connection
    viewer: object  # of team A
    operator: object  # of team A
    admin: object  # of team A
    outsider: object  # operator of team B only
    superuser: object

    def add_run(self, connection=None, *, cache=True, **fields) -> str:
        """A run in the simulator (and, unless cache=False, in the console's cache)."""
        connection = connection or self.connection_a
        key = connection.api_key()
        run_id = self.simulator.state.add_run(key, **fields)
        if cache:
            self.cache_run(connection, run_id)
        return run_id

    def cache_run(self, connection, run_id):
        from console.runs.failures import failure_fields, first_failure_category
        from console.runs.models import Run
        from console.runs.store import retry_facts_from_summary, run_fields_from_detail

        detail = SkyvernClient(connection.base_url, connection.api_key()).get_run(run_id)
        summary = next(
            s
            for s in SkyvernClient(connection.base_url, connection.api_key()).list_runs(
                page_size=1000
            )
            if s.run_id == run_id
        )
        fields = {
            # As a sync caches it: the list row, then the full view.
            **retry_facts_from_summary(summary),
            **run_fields_from_detail(detail),
            # The listing names the workflow, as a sync would have cached it.
            "workflow_permanent_id": summary.workflow_permanent_id or "",
            "workflow_title": summary.workflow_title or "",
        }
        # And the failure columns the store works out from both.
        fields |= failure_fields(
            status=fields["status"],
            failure_reason=fields["failure_reason"],
            category=first_failure_category(summary.raw.get("failure_category")),
            workflow=fields["workflow_permanent_id"],
        )
        return Run.objects.create(
            team=connection.team, connection=connection, run_id=run_id, **fields
        )


def make_user(username, **extra):
    return get_user_model().objects.create_user(
        username, f"{username}@example.com", PASSWORD, **extra
    )


@pytest.fixture
def world(db, simulator) -> World:
    team_a = Team.objects.create(name="Acme Logistics", slug="acme")
    team_b = Team.objects.create(name="Globex Billing", slug="globex")
    connections = []
    for team, key in ((team_a, KEY_A), (team_b, KEY_B)):
        simulator.state.add_org(key, name=team.name)
        connection = Connection(team=team, label="Skyvern", base_url=simulator.url)
        connection.set_api_key(key)
        connection.save()
        connections.append(connection)
    people = {}
    for role in Role:
        people[role.value] = make_user(f"acme-{role.value}")
        Membership.objects.create(team=team_a, user=people[role.value], role=role)
    outsider = make_user("globex-operator")
    Membership.objects.create(team=team_b, user=outsider, role=Role.OPERATOR)
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    return World(
        simulator=simulator,
        team_a=team_a,
        team_b=team_b,
        connection_a=connections[0],
        connection_b=connections[1],
        viewer=people["viewer"],
        operator=people["operator"],
        admin=people["admin"],
        outsider=outsider,
        superuser=superuser,
    )


@pytest.fixture
def no_dns(monkeypatch):
    """No real DNS for the console: an address is itself, a name doesn't
    resolve (accepted at save, checked again on use; see hosts.check_host)."""

    def resolve(host, port, family=socket.AF_UNSPEC):
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "no such name") from None
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (host, port))]

    monkeypatch.setattr(hosts, "resolve", resolve)


@pytest.fixture
def client_as(client):
    """`client_as(user)`: the test client, signed in as that person."""

    def sign_in(user):
        if user is None:
            client.logout()
        else:
            client.force_login(user)
        return client

    return sign_in


# The people of the test identity provider (tests/oidc_provider/), by username.
PROVIDER_PEOPLE = [
    {"username": "dana", "email": "dana@example.com", "groups": ["support-acme"]},
    {"username": "erin", "email": "erin@example.com", "groups": ["support-acme", "leads"]},
    {"username": "frank", "email": "frank@example.com", "groups": ["marketing"]},
    # The same person as the console's password account `acme-operator`.
    {"username": "acme-op", "email": "acme-operator@example.com", "groups": ["support-acme"]},
    {"username": "mallory", "email": "mallory@elsewhere.org", "groups": ["support-acme"]},
]
PROVIDER_GROUP_ROLES = "support-acme:acme:operator,leads:acme:admin,support-globex:globex:viewer"


@pytest.fixture(scope="session")
def identity_provider(live_server, tmp_path_factory):
    """A real OpenID Connect provider (django-oauth-toolkit) in its own
    process on loopback, for the whole session; it sends people back to the
    test client's console and to the live server's."""
    provider = start_provider(
        directory=tmp_path_factory.mktemp("identity-provider"),
        redirect_uris=[
            "http://testserver/oidc/callback/",
            f"{live_server.url}/oidc/callback/",
        ],
        people=PROVIDER_PEOPLE,
    )
    yield provider
    provider.stop()


@pytest.fixture
def oidc_on(settings, identity_provider):
    """The console configured for the test identity provider."""
    forget_discovery()
    settings.OIDC_ISSUER = identity_provider.issuer
    settings.OIDC_RP_CLIENT_ID = identity_provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = identity_provider.client_secret
    settings.OIDC_PROVIDER_NAME = "Example IdP"
    settings.OIDC_ALLOWED_EMAIL_DOMAINS = ["example.com"]
    settings.OIDC_GROUP_ROLES = PROVIDER_GROUP_ROLES
    yield identity_provider
    forget_discovery()


def pytest_collection_modifyitems(items):
    """Tag every test marked `browser`, wherever it lives, in the JUnit report
    (<property name="marker" value="browser"/>): CI counts the browser tests
    from there and fails when one was skipped (.ci/run, check_report)."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.user_properties.append(("marker", "browser"))
