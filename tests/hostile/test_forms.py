"""Hostile input, part 2: form fields (Hypothesis properties).

Connection create/edit and replace-key, the retry button's fields, the bulk
retry preview and confirmation, Sync now: a clear 4xx, a redirect, or the
form again with its errors; never a 500; no row changed when the form is
refused; the API key never echoed back.
"""

from urllib.parse import urljoin, urlsplit

import pytest
from django.urls import reverse
from hypothesis import assume, example, given
from hypothesis import strategies as st

from console.bulk.models import BulkRetryItem, BulkRetryJob
from console.runs.models import Run, Status
from console.runs.services import run_retry
from console.sync.services import sync_state_for
from console.teams.models import Connection
from tests.hostile.common import (
    assert_not_server_error,
    examples,
    nasty_text,
    rolled_back,
    rows,
    snapshot,
)

HTMX = {"HX-Request": "true"}
KEY_MARK = "sk-HOSTILE-KEY"  # in every key these properties type; must never come back


def clean_text(value: str) -> str:
    """What a browser can send: no lone surrogates."""
    return value.encode("utf-8", "replace").decode("utf-8")


@pytest.fixture
def forms_world(world, no_dns):
    """Team A: a failed run already retried once (so no junk can send another),
    a fresh failed run; team B: a failed run. Sync rows exist up front."""
    world.retried = world.add_run(status="failed")
    world.fresh = world.add_run(status="failed")
    world.foreign = world.add_run(world.connection_b, status="failed")
    retried = Run.objects.get(run_id=world.retried)
    outcome = run_retry(run=retried, user=world.operator, seen_retries=0)
    assert outcome.sent and outcome.error is None
    for connection in (world.connection_a, world.connection_b):
        sync_state_for(connection)
    return world


def key_never_echoed(response):
    body = response.content.decode(errors="replace")
    assert KEY_MARK not in body, "the API key was echoed back"
    for name, value in response.items():
        assert KEY_MARK not in value, f"the API key is in the {name} header"


# --- connections -----------------------------------------------------------------------------

keys = st.one_of(
    st.builds(lambda junk: KEY_MARK + junk, st.text(max_size=30)),
    st.builds(lambda junk: junk + KEY_MARK, st.text(max_size=30)),
    st.builds(lambda n: KEY_MARK + "x" * n, st.integers(480, 600)),
    st.sampled_from([KEY_MARK, f" {KEY_MARK} ", f"{KEY_MARK} with space", f"{KEY_MARK}\x00"]),
)
hosts_ = st.sampled_from(
    [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "metadata.google.internal",
        "metadata.google.internal.",
        "10.0.0.1",
        "0.0.0.0",  # noqa: S104 - a hostile base URL, not a bind address
        "2130706433",
        "0x7f.1",
        "api.skyvern.com",
        "bücher.example",
        "xn--",
        "ex ample.com",
        "[bad",
        "bad]",
        "[::1",
        "a" * 300,
        "a" * 64 + ".example",
        "",
        "%00",
        "evil.example#@api.skyvern.com",
    ]
)
base_urls = st.one_of(
    nasty_text,
    st.builds(
        lambda scheme, userinfo, host, port, path: f"{scheme}{userinfo}{host}{port}{path}",
        st.sampled_from(["https://", "http://", "HTTPS://", "ftp://", "javascript://", "//", ""]),
        st.sampled_from(["", "user@", f"user:{KEY_MARK}@", f"{KEY_MARK}@", ":@"]),
        hosts_,
        st.sampled_from(["", ":0", ":443", ":8000", ":99999", ":-1", ":abc", ":"]),
        st.sampled_from(["", "/", "/v1", "/?q=1", "#frag", "/%00", "/\x00", " ", "/a b"]),
    ),
)
labels = st.one_of(nasty_text, st.just("Skyvern"), st.just(" skyvern "), st.just("x" * 101))


def connection_rows():
    return sorted(Connection.objects.values_list("pk", "team_id", "label", "base_url"))


@examples(60)
@given(label=labels, base_url=base_urls, api_key=keys)
@example(label="Second", base_url=f"https://user:{KEY_MARK}@[bad", api_key=KEY_MARK + "123")
@example(label="Second", base_url=f"https://u:{KEY_MARK}@[::1", api_key=KEY_MARK)
@example(label="Second", base_url="https://[bad", api_key=KEY_MARK + "123")
@example(label="Second", base_url=f"https://x:{KEY_MARK}@api.skyvern.com:99999", api_key="k")
def test_adding_a_connection_with_hostile_fields(forms_world, client_as, label, base_url, api_key):
    world = forms_world
    client = client_as(world.admin)
    data = {"label": clean_text(label), "base_url": clean_text(base_url), "api_key": api_key}
    url = reverse("teams:connection_create", kwargs={"team_slug": "acme"})
    before = snapshot(world)
    with rolled_back():
        response = client.post(url, data)
        assert_not_server_error(response, repr(data))
        key_never_echoed(response)
        if response.status_code == 302:
            added = set(connection_rows()) - {
                (r["id"], r["team_id"], r["label"], r["base_url"]) for r in before[0]["Connection"]
            }
            assert len(added) == 1 and next(iter(added))[1] == world.team_a.pk
            assert Connection.objects.count() == len(before[0]["Connection"]) + 1
        else:
            assert response.status_code == 200
            assert response.context["form"].errors
            assert snapshot(world) == before
    assert snapshot(world) == before


@examples(40)
@given(label=labels, base_url=base_urls)
@example(label="Renamed", base_url=f"https://user:{KEY_MARK}@[bad")
def test_editing_a_connection_with_hostile_fields(forms_world, client_as, label, base_url):
    world = forms_world
    client = client_as(world.admin)
    data = {"label": clean_text(label), "base_url": clean_text(base_url)}
    url = reverse("teams:connection_edit", args=["acme", world.connection_a.pk])
    before = snapshot(world)
    with rolled_back():
        response = client.post(url, data)
        assert_not_server_error(response, repr(data))
        key_never_echoed(response)
        if response.status_code == 302:
            after = rows()
            # Only connection A's label or base URL changed (and its updated_at).
            for name, table in after.items():
                if name != "Connection":
                    assert table == before[0][name], name
            others = [c for c in after["Connection"] if c["id"] != world.connection_a.pk]
            assert others == [
                c for c in before[0]["Connection"] if c["id"] != world.connection_a.pk
            ]
        else:
            assert response.status_code == 200
            assert response.context["form"].errors
            assert snapshot(world) == before
    assert snapshot(world) == before


@examples(40)
@given(api_key=keys, pk=st.one_of(st.just(None), st.integers(0, 10**30)))
@example(api_key=KEY_MARK + " x", pk=None)
@example(api_key=KEY_MARK, pk=10**30)
def test_replacing_a_key_with_hostile_input(forms_world, client_as, api_key, pk):
    world = forms_world
    client = client_as(world.admin)
    target = world.connection_a.pk if pk is None else pk
    url = f"/t/acme/connections/{target}/key/"
    before = snapshot(world)
    with rolled_back():
        response = client.post(url, {"api_key": api_key})
        assert_not_server_error(response, repr(api_key))
        key_never_echoed(response)
        if pk is not None and pk != world.connection_a.pk:
            assert response.status_code == 404
            assert snapshot(world) == before
        elif response.status_code == 302:
            changed = Connection.objects.get(pk=world.connection_a.pk)
            assert changed.api_key() == api_key.strip()
        else:
            assert response.status_code == 200
            assert response.context["form"].errors
            assert snapshot(world) == before
    assert snapshot(world) == before


# --- the retry button ------------------------------------------------------------------------

REDIRECT_TRICKS = [
    "//evil.example",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "https://evil.example",
    "http:evil.example",
    "https:/evil.example",
    "https:evil.example",
    " //evil.example",
    "\t//evil.example",
    "/\t/evil.example",
    "\n//evil.example",
    "\x00//evil.example",
    "/%2F%2Fevil.example",
    "%2F%2Fevil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java\nscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//testserver@evil.example",
    "http://testserver@evil.example",
    "http://testserver.evil.example/",
    "http://evil.example\\@testserver/",
    "http://testserver/t/acme/runs/",
    "https://testserver/t/acme/runs/",
    "/t/acme/runs/?status=failed",
    "/t/acme/runs/",
    "",
]
seen_retries = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", "0", "1", " 1 ", "1.0", "1e0", "01", "+1", "-0", "١", "9" * 5000, "\x00"]),
)


def lands_on_this_site(location: str) -> bool:
    """Where a browser would go, leniently parsed as browsers do: tabs and
    newlines dropped, backslashes read as slashes, leading spaces ignored."""
    browser = "".join(c for c in location if c not in "\t\n\r").replace("\\", "/").lstrip(" \x00")
    parts = urlsplit(urljoin("http://testserver/t/acme/runs/wr_x/retry/", browser))
    return parts.scheme in ("http", "https") and parts.netloc == "testserver"


@examples(60)
@given(
    seen=seen_retries,
    confirm=st.one_of(st.text(max_size=8), st.sampled_from(["yes", "YES", "yes ", "on", "1"])),
    next_=st.one_of(st.sampled_from(REDIRECT_TRICKS), nasty_text),
    htmx=st.booleans(),
)
@example(seen="1", confirm="Yes", next_="//evil.example", htmx=False)
@example(seen="x", confirm="yes", next_="/\\evil.example", htmx=False)
@example(seen="9" * 5000, confirm="yes", next_="http:evil.example", htmx=False)
def test_retry_fields_send_nothing_and_redirect_only_here(
    forms_world, client_as, seen, confirm, next_, htmx
):
    """The run was retried once already: only seen_retries=1 and
    confirm_again=yes may send; everything else is refused or stale."""
    world = forms_world
    try:
        intends = int(seen) == 1 and confirm == "yes"
    except ValueError:
        intends = False
    assume(not intends)
    client = client_as(world.operator)
    url = reverse("runs:run_retry", args=["acme", world.retried])
    data = {"seen_retries": clean_text(seen), "confirm_again": clean_text(confirm)}
    data["next"] = clean_text(next_)
    before = snapshot(world)
    with rolled_back():
        response = client.post(url, data, headers=HTMX if htmx else {})
        assert_not_server_error(response, repr(data))
        if htmx:
            assert response.status_code == 200
        else:
            assert response.status_code == 302
            location = response["Location"]
            assert lands_on_this_site(location), location
    assert snapshot(world) == before


# --- bulk retry ------------------------------------------------------------------------------

run_refs = st.one_of(
    st.sampled_from(["fresh", "retried", "foreign"]),
    st.integers(-(10**30), 10**30),
    st.sampled_from(["", " 1", "1.5", "1e3", "0x1", "-1", "\x00", "9" * 40, "٣"]),
    st.text(max_size=10),
)
filter_fields = st.fixed_dictionaries(
    {},
    optional={
        "f-status": st.lists(
            st.one_of(st.sampled_from(Status.values), st.text(max_size=8)), max_size=3
        ),
        "f-q": nasty_text,
        "f-workflow": nasty_text,
        "f-reason": nasty_text,
        "f-error_code": nasty_text,
        "f-created_from": st.one_of(st.dates().map(str), st.text(max_size=12)),
        "f-created_to": st.one_of(st.dates().map(str), st.text(max_size=12)),
        "f-after": st.text(max_size=20),
    },
)
bulk_forms = st.fixed_dictionaries(
    {"scope": st.one_of(st.sampled_from(["ids", "page", "filter"]), nasty_text)},
    optional={
        "run": st.lists(run_refs, max_size=6),
        "page_run": st.lists(run_refs, max_size=6),
        "upto": st.one_of(st.integers(-(10**30), 10**30).map(str), st.text(max_size=8)),
        "options": st.sampled_from(["1", ""]),
        "include_already_retried": st.one_of(st.sampled_from(["on", "", "false"]), nasty_text),
        "max_steps_override": st.one_of(
            st.integers(-(10**30), 10**30).map(str),
            st.sampled_from(["", "0", "1", "1000", "1001", "1.5", "1e3", "NaN", "inf", "١٠"]),
            st.text(max_size=8),
        ),
        "reason": st.one_of(nasty_text, st.just("Portal down overnight")),
    },
).flatmap(lambda form: filter_fields.map(lambda filters: {**form, **filters}))


def resolved(world, form: dict) -> dict:
    pks = {
        "fresh": Run.objects.get(run_id=world.fresh).pk,
        "retried": Run.objects.get(run_id=world.retried).pk,
        "foreign": Run.objects.get(run_id=world.foreign).pk,
    }
    data = {}
    for name, value in form.items():
        if isinstance(value, list):
            data[name] = [clean_text(str(pks.get(v, v))) for v in value]
        else:
            data[name] = clean_text(str(value))
    return data


BULK_REGRESSIONS = [
    {"scope": "ids", "run": [10**30], "reason": "x"},
    {"scope": "page", "page_run": ["9" * 40]},
    {"scope": "filter", "upto": str(10**30), "reason": "x"},
    {"scope": "filter", "f-created_to": "9999-12-31", "reason": "x"},
    {"scope": "ids", "run": ["fresh", "foreign"], "reason": "x", "max_steps_override": "1e3"},
    {"scope": "ids", "run": ["foreign"], "reason": "Portal down overnight"},
]


def _bulk_regressions(test):
    for form in BULK_REGRESSIONS:
        test = example(form=form, create=True)(test)
        test = example(form=form, create=False)(test)
    return test


@examples(80)
@given(form=bulk_forms, create=st.booleans())
@_bulk_regressions
def test_bulk_retry_forms_with_hostile_fields(forms_world, client_as, form, create):
    world = forms_world
    client = client_as(world.operator)
    data = resolved(world, form)
    name = "bulk:bulk_retry_create" if create else "bulk:bulk_retry_preview"
    url = reverse(name, kwargs={"team_slug": "acme"})
    jobs_before = BulkRetryJob.objects.count()
    before = snapshot(world)
    with rolled_back():
        response = client.post(url, data)
        assert_not_server_error(response, repr(data))
        assert response.status_code in (200, 303, 400), response.status_code
        made = BulkRetryJob.objects.count() - jobs_before
        if create and made:
            # A job over team A's runs only, and nothing else changed; nothing sent yet.
            assert made == 1
            job = BulkRetryJob.objects.latest("pk")
            assert response.status_code == 303
            assert response["Location"] == reverse("bulk:bulk_job_detail", args=["acme", job.pk])
            assert job.team_id == world.team_a.pk
            items = BulkRetryItem.objects.filter(job=job)
            assert items.exists()
            assert not items.exclude(run__team=world.team_a).exists()
            after = rows()
            for table in ("Team", "Membership", "Connection", "Run", "Retry"):
                assert after[table] == before[0][table], table
            assert world.simulator.state.retry_counts() == before[1]
        else:
            assert made == 0
            if response.status_code == 303:
                assert response["Location"].startswith("/t/acme/runs/")
            assert snapshot(world) == before
    assert snapshot(world) == before


# --- sync now --------------------------------------------------------------------------------


@examples(15)
@given(
    data=st.dictionaries(
        st.sampled_from(["full", "connection", "next", "x", "since"]), nasty_text, max_size=3
    ),
    htmx=st.booleans(),
)
def test_sync_now_takes_no_input_and_only_queues(forms_world, client_as, data, htmx):
    world = forms_world
    client = client_as(world.operator)
    url = reverse("sync:sync_now", kwargs={"team_slug": "acme"})
    data = {k: clean_text(v) for k, v in data.items()}
    before = snapshot(world)
    with rolled_back():
        response = client.post(url, data, headers=HTMX if htmx else {})
        assert_not_server_error(response, repr(data))
        assert response.status_code == (200 if htmx else 302)
        if not htmx:
            assert response["Location"] == reverse("runs:run_list", args=["acme"])
        # The sync is queued when the request's transaction commits: nothing yet.
        assert snapshot(world) == before
    assert snapshot(world) == before
