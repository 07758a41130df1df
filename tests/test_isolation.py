"""Who may reach which URL: a matrix generated from the URL configuration.

Every named URL the project routes must have an entry in ACCESS below, saying
how to build its arguments, which methods it takes and which role it needs.
A URL without an entry fails `test_isolation_matrix` (so a new view can't
ship without being checked), and an entry without a URL fails
`test_every_entry_is_a_real_url` (so the table can't rot).

For every URL × person × method (× htmx variant where the view serves
fragments) the expected answer is computed from the entry:

- anonymous → 302 to the login page, whatever the method (except on a
  public URL: the Skyvern webhook answers everyone alike);
- a method the view does not take → 405;
- the outsider (a member of team B only) on a team-A URL → 404, never 403;
- a member of team A whose role is too small → 403;
- otherwise the entry's own answer (200, or 302 somewhere other than login).

A refused request must change nothing (connections, runs, retries, and no
retry reaching the simulator).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState
from console.runs.models import Retry, RetryState, Run
from console.teams.models import ROLE_RANK, Connection, Membership, Role, Team
from tests.conftest import KEY_A

LOGIN = reverse("login")
HTMX = {"HX-Request": "true"}
ANYONE = "anyone"  # pseudo-role: the URL is public
SIGNED_IN = "signed in"  # pseudo-role: any signed-in person, in a team or not

# The people of the `world` fixture, by the attribute that holds them.
PEOPLE = ["anonymous", "viewer", "operator", "admin", "outsider", "superuser"]
ROLE_IN_A = {
    "viewer": Role.VIEWER,
    "operator": Role.OPERATOR,
    "admin": Role.ADMIN,
    "superuser": Role.ADMIN,  # superusers act as admins of every team
}


@dataclass(frozen=True)
class Call:
    """One way of calling a URL, and what a person allowed to do it gets."""

    method: str
    ok: int
    htmx: bool = False
    headers: dict = field(default_factory=dict)
    data: Callable | None = None  # world -> POST data
    to: str | None = None  # where an allowed 302 goes; None: anywhere but the login page
    fragment: bool = False  # 200 answer is a fragment, not a whole page

    @property
    def label(self) -> str:
        return f"{self.method}{' htmx' if self.htmx else ''}"


@dataclass(frozen=True)
class Entry:
    """How to check one named URL."""

    # "team": kwargs {team_slug}; "run": + a run of that team;
    # "connection": + a connection of that team; "plain": no kwargs;
    # "job": + a running bulk retry job of that team; "item": + its unknown item;
    # "member": + the membership of that team's viewer (team B: its operator);
    # "retry": + a run of that team and its retry #1, of unknown outcome.
    kind: str
    needs: object  # a Role, SIGNED_IN or ANYONE
    calls: tuple[Call, ...] = ()
    # Answer per person where it isn't derived from `needs` (the non-team URLs).
    per_person: dict | None = None
    skip: str | None = None  # a reason: this URL is deliberately not checked here
    kwargs: Callable | None = None  # world -> kwargs of a "plain" URL that takes some
    setup: Callable | None = None  # world -> None: objects the call's data needs, made first


def retry_data(world):
    return {"seen_retries": "0", "next": reverse("runs:run_list", args=["acme"])}


def replay_data(world):
    return {"seen_replays": "0", "next": reverse("runs:run_list", args=["acme"])}


def cancel_data(world):
    return {"seen_cancels": "0", "confirm": "yes", "next": reverse("runs:run_list", args=["acme"])}


def confirm_data(world):
    return {"confirm": "yes"}


def retry_link_data(world):
    # A run Skyvern doesn't have: linking it is refused after the access checks.
    return {"run_id": "wr_not_at_skyvern", "next": reverse("runs:run_list", args=["acme"])}


def new_connection_data(world):
    # A key Skyvern knows: it is tested before it is saved.
    world.simulator.state.add_org("sk-another-key-1234")
    return {"label": "Second", "base_url": world.simulator.url, "api_key": "sk-another-key-1234"}


def edit_connection_data(world):
    return {"label": "Renamed", "base_url": world.simulator.url}


def replace_key_data(world):
    # A rotated key of the same organisation: it is tested, and sees the cached runs.
    world.simulator.state.add_key(KEY_A, f"{KEY_A}-rotated")
    return {"api_key": f"{KEY_A}-rotated"}


def add_team_a_run(world):
    world.add_run(status="failed")


def bulk_preview_data(world):
    run = Run.objects.filter(team=world.team_a).order_by("-pk").first()
    return {"scope": "ids", "run": [run.pk]}


def bulk_create_data(world):
    return {**bulk_preview_data(world), "reason": "Portal down overnight"}


def threshold_data(world) -> dict:
    return {"min_success_percent": "40"}


def group_preview_data(world):
    run = Run.objects.filter(team=world.team_a).order_by("-pk").first()
    return {"group": run.failure_group}


def group_create_data(world):
    return {
        **group_preview_data(world),
        "options": "1",
        "team": [world.team_a.slug],
        "reason": "Portal down overnight",
    }


def retry_anyway_data(world):
    return {"confirm": "on"}


def make_bulk_job(world, team):
    """A running bulk retry job of `team` with one item whose outcome is unknown."""
    connection = world.connection_b if team == world.team_b else world.connection_a
    run_id = world.add_run(connection, status="failed")
    run = Run.objects.get(connection=connection, run_id=run_id)
    job = BulkRetryJob.objects.create(
        team=team, created_by=None, reason="Isolation check", total=1, state=JobState.RUNNING
    )
    BulkRetryItem.objects.create(
        job=job, run=run, connection=connection, state=ItemState.UNKNOWN, error="Timed out."
    )
    return job


def login_data(world):
    return {"username": "nobody", "password": "wrong password"}


def code_data(world):
    return {"code": "000000"}


def member_add_data(world):
    from django.contrib.auth import get_user_model

    from tests.conftest import make_user

    if not get_user_model().objects.filter(username="newcomer").exists():
        make_user("newcomer")
    return {"login": "newcomer@example.com", "role": "viewer"}


def member_invite_data(world):
    return {"username": "brand-new", "email": "brand-new@example.com", "role": "operator"}


def member_role_data(world):
    return {"role": "operator"}


def theme_data(world):
    return {"theme": "dark"}


def runs_layout_data(world):
    return {"layout": "cards"}


def team_create_data(world):
    return {"name": "Initech Support", "slug": "initech"}


def password_set_kwargs(world):
    return {"uidb64": "MQ", "token": "not-a-valid-token"}


SUPERUSER_ONLY = {"viewer": 403, "operator": 403, "admin": 403, "outsider": 403}


def webhook_kwargs(world):
    from console.sync.services import sync_state_for

    return {"token": sync_state_for(world.connection_a).webhook_token}


ACCESS: dict[str, Entry] = {
    # --- not team-scoped ----------------------------------------------------------
    "home": Entry(
        kind="plain",
        needs=SIGNED_IN,
        calls=(Call("GET", 200),),
        # Someone in exactly one team goes straight to its runs.
        per_person={
            "viewer": 302,
            "operator": 302,
            "admin": 302,
            "outsider": 302,
            "superuser": 200,
        },
    ),
    "login": Entry(
        kind="plain",
        needs=ANYONE,
        calls=(Call("GET", 200), Call("POST", 200, data=login_data)),
        # redirect_authenticated_user: a signed-in person is sent on.
        per_person={p: 302 for p in PEOPLE if p != "anonymous"},
    ),
    "logout": Entry(kind="plain", needs=SIGNED_IN, calls=(Call("POST", 302, to=LOGIN),)),
    # Only a cookie of the person's own browser: anyone, signed in or not.
    "theme_set": Entry(
        kind="plain",
        needs=ANYONE,
        calls=(Call("GET", 405), Call("POST", 302, data=theme_data, to="/")),
    ),
    # Compact rows or cards on the runs page: a cookie of the person's own browser.
    "runs_layout_set": Entry(
        kind="plain",
        needs=SIGNED_IN,
        calls=(Call("GET", 405), Call("POST", 302, data=runs_layout_data, to="/")),
    ),
    # Two-factor sign-in (tests/test_two_factor.py covers people with a device):
    # nobody here has one, so the code page sends them on, and confirm/disable
    # have nothing to act on.
    "twofactor:verify": Entry(
        kind="plain",
        needs=SIGNED_IN,
        calls=(Call("GET", 302, to=reverse("home")), Call("POST", 302, data=code_data)),
    ),
    "twofactor:manage": Entry(kind="plain", needs=SIGNED_IN, calls=(Call("GET", 200),)),
    "twofactor:setup": Entry(
        kind="plain",
        needs=SIGNED_IN,
        calls=(Call("POST", 302, to=reverse("twofactor:manage")),),
    ),
    **{
        f"twofactor:{step}": Entry(
            kind="plain",
            needs=SIGNED_IN,
            calls=(Call("POST", 302, data=code_data, to=reverse("twofactor:manage")),),
        )
        for step in ("confirm", "disable")
    },
    # Sign-in with the identity provider: public, and not there at all unless
    # OIDC_ISSUER and OIDC_CLIENT_ID are set (tests/oidc/ covers it configured).
    **{
        f"oidc:{step}": Entry(kind="plain", needs=ANYONE, calls=(Call("GET", 404),))
        for step in ("sign_in", "callback")
    },
    # One's own time zone only: there is no one else's to name.
    "twofactor:time_zone_change": Entry(
        kind="plain",
        needs=SIGNED_IN,
        calls=(
            Call(
                "POST",
                302,
                data=lambda world: {"time_zone": "Europe/Berlin"},
                to=reverse("twofactor:manage"),
            ),
        ),
    ),
    # No session, no CSRF: Skyvern's HMAC signature is the only credential, so a
    # POST without one is refused alike for everyone, signed in or not.
    "skyvern_webhook": Entry(
        kind="plain", needs=ANYONE, kwargs=webhook_kwargs, calls=(Call("POST", 401),)
    ),
    # --- runs of a team -------------------------------------------------------------
    "runs:run_list": Entry(
        kind="team",
        needs=Role.VIEWER,
        calls=(
            Call("GET", 200),
            Call("GET", 200, htmx=True, headers={"HX-Target": "run-results"}, fragment=True),
        ),
    ),
    "runs:failure_inbox": Entry(kind="team", needs=Role.VIEWER, calls=(Call("GET", 200),)),
    "runs:run_updates": Entry(
        kind="team",
        needs=Role.VIEWER,
        # Polled by the runs page; without htmx it is the runs page.
        calls=(Call("GET", 302), Call("GET", 200, htmx=True, fragment=True)),
    ),
    "runs:run_detail": Entry(kind="run", needs=Role.VIEWER, calls=(Call("GET", 200),)),
    "runs:run_detail_refresh": Entry(
        kind="run",
        needs=Role.VIEWER,
        # The detail page's details section, fresh from Skyvern; without htmx, the page.
        calls=(Call("GET", 302), Call("GET", 200, htmx=True, fragment=True)),
    ),
    "runs:run_card": Entry(
        kind="run",
        needs=Role.VIEWER,
        # Without htmx the card sends the browser to the run's page.
        calls=(Call("GET", 302), Call("GET", 200, htmx=True, fragment=True)),
    ),
    **{
        name: Entry(
            kind="retry",
            needs=Role.OPERATOR,
            calls=(
                Call("POST", 302, data=retry_link_data),
                Call("POST", 200, htmx=True, data=retry_link_data, fragment=True),
            ),
        )
        for name in ("runs:retry_check", "runs:retry_link")
    },
    "runs:run_retry_confirm": Entry(
        kind="run",
        needs=Role.OPERATOR,
        # A failed run needs no confirmation: without htmx, off to its page.
        calls=(Call("GET", 302), Call("GET", 200, htmx=True, fragment=True)),
    ),
    "runs:run_webhook_replay": Entry(
        kind="run",
        needs=Role.OPERATOR,
        # The run's webhook didn't fail: refused in words, after the access checks.
        calls=(
            Call("POST", 302, data=replay_data),
            Call("POST", 200, htmx=True, data=replay_data, fragment=True),
        ),
    ),
    "runs:run_cancel": Entry(
        kind="run",
        needs=Role.OPERATOR,
        # A confirmation (the card with htmx, a page without), then the confirmed POST;
        # the run has finished: refused in words, after the access checks.
        calls=(
            Call("GET", 200),
            Call("GET", 200, htmx=True, fragment=True),
            Call("POST", 302, data=cancel_data),
            Call("POST", 200, htmx=True, data=cancel_data, fragment=True),
        ),
    ),
    "runs:run_retry": Entry(
        kind="run",
        needs=Role.OPERATOR,
        calls=(
            Call("POST", 302, data=retry_data),
            Call("POST", 200, htmx=True, data=retry_data, fragment=True),
        ),
    ),
    # A rerun of a run not behind its workflow is refused with a message: the
    # same redirect back to the run, and never another team's run.
    "runs:run_rerun": Entry(
        kind="run", needs=Role.OPERATOR, calls=(Call("POST", 302, data=retry_data),)
    ),
    # --- a team's Skyvern connections -------------------------------------------------
    "teams:connection_list": Entry(kind="team", needs=Role.ADMIN, calls=(Call("GET", 200),)),
    "teams:connection_create": Entry(
        kind="team",
        needs=Role.ADMIN,
        calls=(Call("GET", 200), Call("POST", 302, data=new_connection_data)),
    ),
    "teams:connection_edit": Entry(
        kind="connection",
        needs=Role.ADMIN,
        calls=(Call("GET", 200), Call("POST", 302, data=edit_connection_data)),
    ),
    "teams:connection_replace_key": Entry(
        kind="connection",
        needs=Role.ADMIN,
        calls=(Call("GET", 200), Call("POST", 302, data=replace_key_data)),
    ),
    "teams:connection_delete": Entry(
        kind="connection",
        needs=Role.ADMIN,
        calls=(Call("GET", 200), Call("POST", 302)),
    ),
    "teams:connection_test": Entry(
        kind="connection",
        needs=Role.ADMIN,
        calls=(Call("POST", 302), Call("POST", 200, htmx=True, fragment=True)),
    ),
    "sync:connection_new_webhook_url": Entry(
        kind="connection", needs=Role.ADMIN, calls=(Call("POST", 302),)
    ),
    # --- keeping the history in line with Skyvern ----------------------------------------
    "sync:sync_status": Entry(
        kind="team",
        needs=Role.VIEWER,
        # Without htmx the status is part of the runs page.
        calls=(Call("GET", 302), Call("GET", 200, htmx=True, fragment=True)),
    ),
    "sync:sync_now": Entry(
        kind="team",
        needs=Role.OPERATOR,
        calls=(Call("POST", 302), Call("POST", 200, htmx=True, fragment=True)),
    ),
    # --- bulk retry ------------------------------------------------------------------------
    "bulk:bulk_job_list": Entry(kind="team", needs=Role.VIEWER, calls=(Call("GET", 200),)),
    "bulk:bulk_retry_preview": Entry(
        kind="team",
        needs=Role.OPERATOR,
        setup=add_team_a_run,
        calls=(Call("POST", 200, data=bulk_preview_data),),
    ),
    "bulk:bulk_retry_create": Entry(
        kind="team",
        needs=Role.OPERATOR,
        setup=add_team_a_run,
        calls=(Call("POST", 303, data=bulk_create_data),),
    ),
    "bulk:bulk_job_detail": Entry(
        kind="job",
        needs=Role.VIEWER,
        calls=(
            Call("GET", 200),
            Call("GET", 200, htmx=True, headers={"HX-Target": "job-live"}, fragment=True),
        ),
    ),
    "bulk:bulk_job_progress": Entry(
        kind="job",
        needs=Role.VIEWER,
        # Polled by the job page; without htmx it is the job page.
        calls=(Call("GET", 302), Call("GET", 200, htmx=True, fragment=True)),
    ),
    "bulk:bulk_job_export": Entry(kind="job", needs=Role.VIEWER, calls=(Call("GET", 200),)),
    **{
        f"bulk:bulk_job_{verb}": Entry(
            kind="job",
            needs=Role.OPERATOR,
            calls=(Call("POST", 303), Call("POST", 200, htmx=True, fragment=True)),
        )
        for verb in ("pause", "resume")
    },
    "bulk:bulk_job_threshold": Entry(
        kind="job",
        needs=Role.OPERATOR,
        calls=(
            Call("POST", 303, data=threshold_data),
            Call("POST", 200, htmx=True, fragment=True, data=threshold_data),
        ),
    ),
    "bulk:bulk_job_cancel": Entry(
        kind="job",
        needs=Role.OPERATOR,
        # A confirmation page, then the confirmed POST.
        calls=(
            Call("GET", 200),
            Call("POST", 303, data=confirm_data),
            Call("POST", 200, htmx=True, data=confirm_data, fragment=True),
        ),
    ),
    "bulk:bulk_item_check": Entry(
        kind="item",
        needs=Role.OPERATOR,
        calls=(Call("POST", 303), Call("POST", 200, htmx=True, fragment=True)),
    ),
    "bulk:bulk_item_retry_anyway": Entry(
        kind="item",
        needs=Role.OPERATOR,
        # A confirmation page, then the confirmed POST.
        calls=(Call("GET", 200), Call("POST", 303, data=retry_anyway_data)),
    ),
    # --- the incident view across the person's teams ------------------------------------------
    # Not team URLs: everyone signed in sees their own teams' rows (the outsider,
    # team B's); tests/incidents/ shows that no other team's row is ever there.
    **{
        name: Entry(kind="plain", needs=SIGNED_IN, calls=(Call("GET", 200),))
        for name in ("incidents:failure_inbox", "incidents:job_list", "incidents:run_find")
    },
    # Retrying needs the operator role in some team: A's viewer may nowhere. The
    # outsider (B's operator) gets a preview of B's runs of the group: none.
    "incidents:group_retry_preview": Entry(
        kind="plain",
        needs=SIGNED_IN,
        setup=add_team_a_run,
        calls=(Call("POST", 200, data=group_preview_data),),
        per_person={"viewer": 403},
    ),
    # The outsider posting team A's slug is refused on the preview page, which
    # comes back (200) with nothing created: test_a_form_naming_team_a_...
    "incidents:group_retry_create": Entry(
        kind="plain",
        needs=SIGNED_IN,
        setup=add_team_a_run,
        calls=(Call("POST", 303, data=group_create_data),),
        per_person={"viewer": 403, "outsider": 200},
    ),
    # --- the audit log ------------------------------------------------------------------------
    **{
        name: Entry(kind="team", needs=Role.ADMIN, calls=(Call("GET", 200),))
        for name in ("audit:audit_team_log", "audit:audit_team_export")
    },
    **{
        name: Entry(
            kind="plain", needs=SIGNED_IN, calls=(Call("GET", 200),), per_person=SUPERUSER_ONLY
        )
        for name in ("audit:audit_log", "audit:audit_export")
    },
    # --- members and teams --------------------------------------------------------------------
    "members:member_list": Entry(kind="team", needs=Role.ADMIN, calls=(Call("GET", 200),)),
    "members:member_add": Entry(
        kind="team", needs=Role.ADMIN, calls=(Call("POST", 303, data=member_add_data),)
    ),
    # The one-time link is shown on the answer itself, once: no redirect.
    "members:member_invite": Entry(
        kind="team", needs=Role.ADMIN, calls=(Call("POST", 200, data=member_invite_data),)
    ),
    "members:member_role_change": Entry(
        kind="member", needs=Role.ADMIN, calls=(Call("POST", 303, data=member_role_data),)
    ),
    "members:member_remove": Entry(
        kind="member", needs=Role.ADMIN, calls=(Call("GET", 200), Call("POST", 303))
    ),
    "team_create": Entry(
        kind="plain",
        needs=SIGNED_IN,
        calls=(Call("GET", 200), Call("POST", 303, data=team_create_data)),
        per_person=SUPERUSER_ONLY,
    ),
    # The new member's one-time link, before they have a password: public. A
    # wrong link answers a page saying so, to everyone alike.
    "password_set": Entry(
        kind="plain",
        needs=ANYONE,
        kwargs=password_set_kwargs,
        calls=(Call("GET", 200), Call("POST", 200)),
    ),
    # --- deliberately not checked here -------------------------------------------------
    "admin:*": Entry(
        kind="plain",
        needs=None,
        skip="Django admin: staff-only behind is_staff and Django's own permission checks, "
        "not team roles; the key is read-only there (see ConnectionAdmin).",
    ),
    "static:*": Entry(
        kind="plain",
        needs=None,
        skip="Static files: served by WhiteNoise before routing, public by design "
        "(the login page needs its CSS); see test_static_files_are_public.",
    ),
}


# --- walking the URL configuration ----------------------------------------------------


def url_names(patterns=None, namespace="", prefix=""):
    """(table key, route) for every URL the project routes, through includes."""
    if patterns is None:
        patterns = get_resolver().url_patterns
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if route.lstrip("^").startswith(settings.STATIC_URL.lstrip("/")):
            yield "static:*", route
        elif isinstance(pattern, URLResolver):
            inner = ":".join(filter(None, [namespace, pattern.namespace]))
            if inner in ("admin",):
                yield "admin:*", route
                continue
            yield from url_names(pattern.url_patterns, inner, route)
        elif isinstance(pattern, URLPattern):
            if pattern.name is None:
                yield f"<unnamed {route}>", route
            else:
                yield (f"{namespace}:{pattern.name}" if namespace else pattern.name), route


ROUTED = dict(url_names())


def allowed_methods(entry: Entry) -> set[str]:
    return {call.method for call in entry.calls}


def expected_status(entry: Entry, person: str, call: Call) -> int:
    """What `person` must get for `call` on a team-A URL (or a non-team URL)."""
    if person == "anonymous":
        return call.ok if entry.needs == ANYONE else 302
    if entry.per_person and person in entry.per_person:
        return entry.per_person[person]
    if entry.needs in (ANYONE, SIGNED_IN):
        return call.ok
    if person == "outsider":
        return 404
    if ROLE_RANK[ROLE_IN_A[person]] < ROLE_RANK[entry.needs]:
        return 403
    return call.ok


def cases():
    for name in ROUTED:
        entry = ACCESS.get(name)
        if entry is None or entry.skip:
            yield pytest.param(name, None, None, id=f"{name}")
            continue
        for person in PEOPLE:
            for call in entry.calls:
                yield pytest.param(name, person, call, id=f"{name}-{person}-{call.label}")
            for method in sorted({"GET", "POST"} - allowed_methods(entry)):
                wrong = Call(method, 405)
                yield pytest.param(name, person, wrong, id=f"{name}-{person}-{method}-405")


def kwargs_for(entry: Entry, world, *, team=None, run_team=None, connection_team=None):
    """The URL kwargs of an entry: team A and its objects unless told otherwise."""
    team = team or world.team_a
    if entry.setup:
        entry.setup(world)
    if entry.kind == "plain":
        return entry.kwargs(world) if entry.kwargs else {}
    kwargs = {"team_slug": team.slug}
    if entry.kind == "run":
        connection = world.connection_b if (run_team or team) == world.team_b else None
        kwargs["run_id"] = world.add_run(connection, status="failed")
    elif entry.kind == "retry":
        connection = world.connection_b if (run_team or team) == world.team_b else None
        kwargs["run_id"] = world.add_run(connection, status="failed")
        run = Run.objects.get(run_id=kwargs["run_id"])
        Retry.objects.create(run=run, number=1, state=RetryState.UNKNOWN)
        kwargs["number"] = 1
    elif entry.kind == "connection":
        owner = connection_team or team
        kwargs["pk"] = (world.connection_b if owner == world.team_b else world.connection_a).pk
    elif entry.kind in ("job", "item"):
        job = make_bulk_job(world, run_team or team)
        kwargs["job_id"] = job.pk
        if entry.kind == "item":
            kwargs["item_id"] = job.items.get().pk
    elif entry.kind == "member":
        owner = connection_team or team
        person = world.outsider if owner == world.team_b else world.viewer
        kwargs["pk"] = Membership.objects.get(team=owner, user=person).pk
    return kwargs


def snapshot(world, run_id=None):
    """What a refused request must leave as it was."""
    return (
        sorted(Connection.objects.values_list("pk", "label", "base_url", "api_key_encrypted")),
        sorted(Run.objects.values_list("pk", "run_id", "status")),
        Retry.objects.count(),
        world.simulator.state.retry_count(run_id) if run_id else None,
        sorted(BulkRetryJob.objects.values_list("pk", "state")),
        sorted(BulkRetryItem.objects.values_list("pk", "state")),
        sorted(Membership.objects.values_list("pk", "team_id", "user_id", "role")),
    )


def send(client, call: Call, url: str, world):
    headers = dict(call.headers)
    if call.htmx:
        headers.update(HTMX)
    if call.method == "GET":
        return client.get(url, headers=headers)
    return client.post(url, call.data(world) if call.data else {}, headers=headers)


def check_answer(response, expected: int, call: Call, url: str):
    got = response.status_code
    detail = f"{call.label} {url}: expected {expected}, got {got}"
    if got == 302:
        detail += f" → {response['Location']}"
    assert got == expected, detail
    if expected == 302:
        return response["Location"]
    if expected == 200:
        content = b"".join(response.streaming_content) if response.streaming else response.content
        html = content.decode()
        if call.fragment:
            assert "<html" not in html, f"{detail}: htmx should get a fragment, not a page"
        elif response["Content-Type"].startswith("text/html"):
            assert "<html" in html, f"{detail}: expected a whole page"
    return None


# --- the matrix -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "person", "call"), list(cases()))
def test_isolation_matrix(name, person, call, world, client_as):
    entry = ACCESS.get(name)
    if entry is None:
        pytest.fail(
            f"URL {name!r} ({ROUTED[name]}) has no entry in tests/test_isolation.py ACCESS: "
            "say who may call it, with which methods, before shipping it."
        )
    if entry.skip:
        pytest.skip(entry.skip)

    kwargs = kwargs_for(entry, world)
    url = reverse(name, kwargs=kwargs)
    before = snapshot(world, kwargs.get("run_id"))
    client = client_as(None if person == "anonymous" else getattr(world, person))
    if call.ok == 405:
        expected = 302 if person == "anonymous" and entry.needs != ANYONE else 405
    else:
        expected = expected_status(entry, person, call)

    response = send(client, call, url, world)

    location = check_answer(response, expected, call, url)
    if expected == 302 and person == "anonymous" and entry.needs != ANYONE:
        assert location == f"{LOGIN}?next={quote(url)}", location
    elif expected == 302 and call.to:
        assert location == call.to, f"{url}: sent to {location}, not {call.to}"
    elif expected == 302:
        assert not location.startswith(LOGIN), f"{url}: a signed-in person sent to login"
    if expected in (401, 403, 404, 405) or (person == "anonymous" and entry.needs != ANYONE):
        assert snapshot(world, kwargs.get("run_id")) == before, (
            f"{person} {call.label} {url} was refused with {expected} but changed something"
        )


def test_every_entry_is_a_real_url():
    stale = sorted(set(ACCESS) - set(ROUTED) - {"static:*"})
    assert not stale, f"ACCESS has entries for URLs that no longer exist: {stale}"


def test_every_routed_url_is_named_and_listed():
    """The same rule as the matrix, as one readable list."""
    missing = sorted(name for name in ROUTED if name not in ACCESS)
    assert not missing, f"URLs with no isolation entry: {missing}"


def test_the_walk_finds_the_team_urls():
    """Guards the walker itself: it must reach into the team includes."""
    assert ROUTED["runs:run_retry"] == "t/<slug:team_slug>/runs/<run_id:run_id>/retry/"
    assert ROUTED["teams:connection_test"] == "t/<slug:team_slug>/connections/<int:pk>/test/"
    assert "admin:*" in ROUTED


# --- objects of one team under another team's slug ----------------------------------------

OBJECT_URLS = [
    name
    for name, entry in ACCESS.items()
    if entry.kind in ("run", "retry", "connection", "job", "item", "member")
]


@pytest.mark.parametrize("name", OBJECT_URLS)
def test_a_team_a_object_under_team_bs_slug_is_not_found(name, world, client_as):
    """The outsider, made admin of B, asks for team A's run/connection via /t/globex/."""
    Membership.objects.filter(user=world.outsider, team=world.team_b).update(role=Role.ADMIN)
    entry = ACCESS[name]
    client = client_as(world.outsider)
    for call in entry.calls:
        kwargs = kwargs_for(
            entry, world, team=world.team_b, run_team=world.team_a, connection_team=world.team_a
        )
        url = reverse(name, kwargs=kwargs)
        before = snapshot(world, kwargs.get("run_id"))
        response = send(client, call, url, world)
        assert response.status_code == 404, f"{call.label} {url}: {response.status_code}"
        assert snapshot(world, kwargs.get("run_id")) == before


@pytest.mark.parametrize("person", ["admin", "superuser"])
@pytest.mark.parametrize("name", OBJECT_URLS)
def test_a_team_b_object_under_team_as_slug_is_not_found(name, person, world, client_as):
    """Even team A's admin (or a superuser) can't reach B's objects through /t/acme/."""
    entry = ACCESS[name]
    client = client_as(getattr(world, person))
    for call in entry.calls:
        kwargs = kwargs_for(
            entry, world, team=world.team_a, run_team=world.team_b, connection_team=world.team_b
        )
        url = reverse(name, kwargs=kwargs)
        before = snapshot(world, kwargs.get("run_id"))
        response = send(client, call, url, world)
        assert response.status_code == 404, f"{call.label} {url}: {response.status_code}"
        assert snapshot(world, kwargs.get("run_id")) == before


TEAM_URLS = [name for name, entry in ACCESS.items() if entry.kind != "plain"]


@pytest.mark.parametrize("name", TEAM_URLS)
def test_an_unknown_team_is_not_found_even_for_a_superuser(name, world, client_as):
    entry = ACCESS[name]
    for person in ("viewer", "admin", "outsider", "superuser"):
        client = client_as(getattr(world, person))
        for call in entry.calls:
            kwargs = kwargs_for(entry, world)
            kwargs["team_slug"] = "no-such-team"
            response = send(client, call, reverse(name, kwargs=kwargs), world)
            assert response.status_code == 404, f"{person} {call.label} {name}"


def test_a_former_member_loses_access_at_once(world, client_as):
    client = client_as(world.admin)
    url = reverse("teams:connection_list", args=[world.team_a.slug])
    assert client.get(url).status_code == 200
    Membership.objects.filter(user=world.admin).delete()
    assert client.get(url).status_code == 404


def test_a_deactivated_person_is_signed_out(world, client_as):
    client = client_as(world.admin)
    world.admin.is_active = False
    world.admin.save()
    response = client.get(reverse("teams:connection_list", args=[world.team_a.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_the_team_switcher_lists_only_my_teams(world, client_as):
    html = client_as(world.outsider).get(reverse("runs:run_list", args=["globex"])).content
    assert b"Globex Billing" in html
    assert b"Acme Logistics" not in html
    assert b"/t/acme/" not in html


def test_static_files_are_public(client, db):
    response = client.get(f"/{settings.STATIC_URL.strip('/')}/console/console.css")
    assert response.status_code == 200


def test_each_person_gets_their_own_role_in_each_of_their_teams(world):
    """Three people with three roles in one team, one of them in a second
    team too: each sees each of their teams once, with their own role."""
    Membership.objects.create(team=world.team_b, user=world.viewer, role=Role.ADMIN)
    seen = {
        person.username: [
            (team.slug, team.my_role) for team in Team.objects.roles_of(person)
        ]
        for person in (world.viewer, world.operator, world.admin, world.outsider)
    }
    assert seen == {
        "acme-viewer": [("acme", "viewer"), ("globex", "admin")],
        "acme-operator": [("acme", "operator")],
        "acme-admin": [("acme", "admin")],
        "globex-operator": [("globex", "operator")],
    }
    every = [(team.slug, team.my_role) for team in Team.objects.roles_of(world.superuser)]
    assert every == [("acme", "admin"), ("globex", "admin")]


def test_a_form_naming_team_a_posted_by_team_bs_operator_creates_nothing(world, client_as):
    """The cross-team bulk retry refuses a team the person may not retry in,
    and takes nothing of it: no job, no item, nothing sent."""
    add_team_a_run(world)
    before = snapshot(world)
    response = client_as(world.outsider).post(
        reverse("incidents:group_retry_create"), group_create_data(world)
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "You can&#x27;t retry runs in acme: nothing was created." in html
    assert "Acme" not in html
    assert snapshot(world) == before
    assert world.simulator.state.retry_counts() == {}


@pytest.mark.parametrize("person", ["viewer", "outsider"])
def test_the_incident_view_never_shows_another_team(person, world, client_as):
    """Team A's people see none of B's rows across teams, and B's none of A's."""
    mine, other = (
        (world.connection_a, world.connection_b)
        if person == "viewer"
        else (world.connection_b, world.connection_a)
    )
    theirs = world.add_run(other, status="failed", failure_reason="Not yours: other team")
    make_bulk_job(world, other.team)
    world.add_run(mine, status="failed", failure_reason="Yours: own team")
    client = client_as(getattr(world, person))
    for name in ("incidents:failure_inbox", "incidents:job_list"):
        html = client.get(reverse(name)).content.decode()
        assert other.team.name not in html, name
        assert "Not yours" not in html and "Isolation check" not in html, name
    found = client.get(reverse("incidents:run_find"), {"run_id": theirs})
    assert found.status_code == 200
    assert "No run with the id" in found.content.decode()
