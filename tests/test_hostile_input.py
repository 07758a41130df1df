"""Hostile input, part 1: run ids in URLs, the runs page's query parameters,
and search with metacharacters (Hypothesis properties).

Every answer is a clear 4xx or a sane page, never a 500, and never a changed
row. Forms are in tests/hostile/test_forms.py, webhooks in
tests/hostile/test_webhooks.py; the shared strategies and the snapshot are in
tests/hostile/common.py.
"""

import base64
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import quote, unquote

import pytest
from django.urls import Resolver404, resolve, reverse
from hypothesis import example, given
from hypothesis import strategies as st

from console.runs import search
from console.runs.listing import RunFilterForm
from console.runs.models import Run, Status
from tests.hostile.common import (
    TRICKS,
    URL_SAFE_ALPHABET,
    assert_not_server_error,
    examples,
    nasty_text,
    rolled_back,
    snapshot,
)

HTMX = {"HX-Request": "true"}
RUN_VIEWS = {
    "runs:run_detail": "",
    "runs:run_detail_refresh": "refresh/",
    "runs:run_card": "card/",
    "runs:run_retry": "retry/",
}
FOREIGN = object()  # stands for a real run id of team B


# --- a small world -----------------------------------------------------------------------

# Titles with every character search must take literally.
TITLES = [
    "Invoice 100% paid",
    "under_score job",
    "star*glob? run",
    "[bracket] run",
    'quote "double" run',
    "it's single",
    "back\\slash path",
    "Ünïcödé İstanbul ß",
    "KELVIN \u212a degrees",
    "tab\there",
    "percent%_underscore",
    "plain carrier invoices",
]


@pytest.fixture
def hostile(world):
    """Team A: a failed run in Skyvern (retryable), runs with tricky titles;
    team B: one run. Returns the world with `.failed` and `.foreign` ids."""
    world.failed = world.add_run(status="failed")
    world.foreign = world.add_run(world.connection_b, status="failed")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for i, title in enumerate(TITLES):
        Run.objects.create(
            team=world.team_a,
            connection=world.connection_a,
            run_id=f"wr_hostile{i:03d}",
            status=Status.values[i % len(Status.values)],
            workflow_permanent_id=f"wpid_{i % 3}",
            workflow_title=title,
            created_at=start + timedelta(hours=i),
            failure_reason=f"reason {title}",
            raw={"errors": [{"error_code": f"CODE_{i % 2}"}]},
        )
    return world


# --- run ids in URLs -----------------------------------------------------------------------

run_ids = st.one_of(
    st.text(max_size=60),
    st.sampled_from(TRICKS),
    st.sampled_from(
        [
            "..",
            "../..",
            "wr_1/../../connections",
            "wr_1%00",
            "wr_1\x00",
            "wr_1?x=1",
            "wr_1#frag",
            "//evil.example",
            "wr_" + "a" * 100,
            "wr_" + "a" * 101,
            "wr_" + "a" * 5000,
            "wr_-",
            "wr__",
            "wr_%2e%2e",
            "updates",
            FOREIGN,
        ]
    ),
    st.text(alphabet=URL_SAFE_ALPHABET, min_size=1, max_size=120).map(lambda s: "wr_" + s),
    st.text(min_size=1, max_size=30).map(lambda s: "wr_" + s),
)


def run_url(run_id: str, suffix: str, safe: str) -> str:
    return f"/t/acme/runs/{quote(run_id, safe=safe)}/{suffix}"


def routed_to_a_run_view(path: str) -> bool:
    """Does this path reach one of the run views (which must then 404)?"""
    try:
        # What the client sends: no query and no fragment in the path.
        match = resolve(unquote(path.split("#", 1)[0].split("?", 1)[0]))
    except Resolver404:
        return True  # the resolver's own 404
    except UnicodeError:
        return True
    return match.view_name in RUN_VIEWS


@examples(60)
@given(
    run_id=run_ids,
    view=st.sampled_from(sorted(RUN_VIEWS)),
    safe=st.sampled_from(["", "/", "/?#&=%"]),
    htmx=st.booleans(),
)
@example(run_id="wr_" + "a" * 101, view="runs:run_detail", safe="", htmx=False)
@example(run_id=FOREIGN, view="runs:run_retry", safe="", htmx=True)
@example(run_id="wr_1/../../connections", view="runs:run_card", safe="/", htmx=False)
def test_a_hostile_run_id_is_not_found_and_changes_nothing(
    hostile, client_as, run_id, view, safe, htmx
):
    world = hostile
    if run_id is FOREIGN:
        run_id = world.foreign
    # The operator (and the superuser) may retry: a refusal is then not about roles.
    client = client_as(world.operator)
    path = run_url(run_id, RUN_VIEWS[view], safe)
    headers = HTMX if htmx else {}
    before = snapshot(world)
    with rolled_back():
        if view == "runs:run_retry":
            response = client.post(
                path, {"seen_retries": "0", "confirm_again": "yes"}, headers=headers
            )
        else:
            response = client.get(path, headers=headers)
        assert_not_server_error(response, path)
        sent = path.split("#", 1)[0].split("?", 1)[0]
        if not sent.endswith("/") and response.status_code == 301:
            # APPEND_SLASH: to the same path with a slash (which then 404s).
            assert response["Location"].startswith(quote(unquote(sent)) + "/")
        elif routed_to_a_run_view(path):
            assert response.status_code == 404, (path, response.status_code)
        else:
            assert 400 <= response.status_code < 500 or response.status_code in (200, 302)
    assert snapshot(world) == before


def test_a_real_run_id_still_works(hostile, client_as):
    """The property above is not vacuous: the same URLs answer for a real run."""
    client = client_as(hostile.operator)
    for view, suffix in RUN_VIEWS.items():
        if view == "runs:run_retry":
            continue
        response = client.get(run_url(hostile.failed, suffix, ""), headers=HTMX)
        assert response.status_code == 200, view


# --- the runs page's query parameters ---------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)
cursor_times = st.one_of(
    st.datetimes(timezones=st.just(UTC) | offsets).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # naive: refused
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999999-05:00",
            "9999-12-31T23:59:59+00:00",
            "2024-02-30T00:00:00+00:00",
            "2024-13-01T00:00:00+00:00",
            "99999-01-01T00:00:00+00:00",
            "2026-03-01",
            "",
        ]
    ),
    st.text(max_size=30),
)
cursor_pks = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "0", "-1", "1_000", "9" * 30, "1e5", "0x10", " 7 ", "٣"]),
    st.text(max_size=10),
)
cursors = st.one_of(
    st.text(max_size=120),
    st.binary(max_size=80).map(b64),
    st.text(max_size=60).map(lambda s: b64(s.encode())),
    st.builds(
        lambda when, pk, sep: b64(f"{when}{sep}{pk}".encode()),
        cursor_times,
        cursor_pks,
        st.sampled_from(["|", "||", ""]),
    ),
)
dates = st.one_of(
    st.dates().map(date.isoformat),
    st.sampled_from(
        ["0001-01-01", "9999-12-31", "2024-02-30", "0000-01-01", "10000-01-01", "2026-3-1", ""]
    ),
    st.text(max_size=20),
)
statuses = st.lists(
    st.one_of(st.sampled_from(Status.values), st.text(max_size=15), st.sampled_from(TRICKS)),
    max_size=5,
)
query_params = st.fixed_dictionaries(
    {},
    optional={
        "status": statuses,
        "q": nasty_text,
        "workflow": nasty_text,
        "reason": nasty_text,
        "error_code": nasty_text,
        "created_from": dates,
        "created_to": dates,
        "after": cursors,
        "since": cursors,
    },
)


def without_lone_surrogates(params: dict) -> dict:
    """A browser can't send a lone surrogate; Hypothesis' text() may hold one."""

    def clean(value):
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value.encode("utf-8", "replace").decode("utf-8")

    return {name: clean(value) for name, value in params.items()}


REGRESSIONS = [
    # A cursor whose time is out of range once turned to UTC (SQLite: OverflowError).
    {"after": b64(b"0001-01-01T00:00:00+05:00|1")},
    {"since": b64(b"9999-12-31T23:59:59.999999-05:00|1")},
    # A cursor pk beyond 64 bits.
    {"after": b64(f"2026-03-01T00:00:00+00:00|{2**70}".encode())},
    {"since": b64(f"2026-03-01T00:00:00+00:00|{-(2**70)}".encode())},
    # The last day there is: the day after it doesn't exist.
    {"created_to": "9999-12-31"},
    {"created_from": "0001-01-01", "created_to": "0001-01-01"},
    {"q": "a\x00b", "status": ["\x00"], "error_code": "\x00"},
]


def _regressions(test, *, htmx=True):
    for params in REGRESSIONS:
        if htmx:
            test = example(params=params, htmx=False)(test)
            test = example(params=params, htmx=True)(test)
        else:
            test = example(params=params)(test)
    return test


def _regressions_no_htmx(test):
    return _regressions(test, htmx=False)


@examples(80)
@given(params=query_params, htmx=st.booleans())
@_regressions
def test_the_runs_page_answers_any_query_with_a_sane_page(hostile, client_as, params, htmx):
    world = hostile
    client = client_as(world.viewer)
    params = without_lone_surrogates(params)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    headers = {**HTMX, "HX-Target": "run-results"} if htmx else {}
    before = snapshot(world)
    with rolled_back():
        response = client.get(url, params, headers=headers)
    assert_not_server_error(response, repr(params))
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 200:
        html = response.content.decode()
        assert '<section id="run-results"' in html
        assert ("<html" in html) is not htmx
        shown = [run.pk for run in response.context["page"].runs]
        assert not Run.objects.filter(pk__in=shown).exclude(team=world.team_a).exists()
    assert snapshot(world) == before


@examples(50)
@given(params=query_params)
@_regressions_no_htmx
def test_the_runs_page_updates_answer_any_query(hostile, client_as, params):
    world = hostile
    client = client_as(world.viewer)
    params = without_lone_surrogates(params)
    url = reverse("runs:run_updates", kwargs={"team_slug": "acme"})
    before = snapshot(world)
    with rolled_back():
        response = client.get(url, params, headers=HTMX)
    assert_not_server_error(response, repr(params))
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 200:
        assert "<html" not in response.content.decode()
        shown = [run.pk for run in response.context["updates"].new_runs]
        assert not Run.objects.filter(pk__in=shown).exclude(team=world.team_a).exists()
    assert snapshot(world) == before


def test_a_good_cursor_still_pages(hostile, client_as):
    """The cursor properties are not vacuous: a real cursor from a page works."""
    client = client_as(hostile.viewer)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    first = client.get(url).context["page"]
    oldest_first_page = first.runs[-1]
    from console.runs.listing import encode_cursor

    after = client.get(url, {"after": encode_cursor(oldest_first_page)}).context["page"]
    assert not after.is_first
    assert oldest_first_page not in after.runs


# --- search takes every character literally ---------------------------------------------------


def substrings(text: str):
    return st.tuples(st.integers(0, len(text)), st.integers(0, len(text))).map(
        lambda ij: text[min(ij) : max(ij)]
    )


def case_mangled(text: str):
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(text, flips, strict=True))
    )


terms = st.one_of(
    st.sampled_from(TITLES).flatmap(substrings).flatmap(case_mangled),
    st.sampled_from(TRICKS),
    st.text(alphabet=st.sampled_from(list("%_*?[]^\"'\\ -!aesr0123")), max_size=8),
    st.text(max_size=12),
)


def literally_matching(team, term: str) -> set[str]:
    """The reference: runs whose search_text holds the term, as plain text."""
    needle = term.strip().lower()
    return {
        run_id
        for run_id, text in Run.objects.filter(team=team).values_list("run_id", "search_text")
        if needle in text
    }


@pytest.fixture(params=["indexed", "subquery", "scanning"])
def search_path(request, monkeypatch):
    """SQLite answers a rare term by the FTS index's ids, a middling one by
    the FTS table as a subquery and a common one by a scan (LIKE); limits of
    0 send every term down the later paths."""
    if request.param in ("subquery", "scanning"):
        monkeypatch.setattr(search, "PROBE_LIMIT", 0)
    if request.param == "scanning":
        monkeypatch.setattr(search, "SUBQUERY_LIMIT", 0)
    return request.param


@examples(120)
@given(term=terms)
@example(term="100%")
@example(term="_")
@example(term="r_s")
@example(term="*glob?")
@example(term="[bracket]")
@example(term="[b")
@example(term='"double"')
@example(term="it's")
@example(term="k\\s")
@example(term="İstanbul")
@example(term="\u212a")
@example(term="ß")
@example(term="%_u")
@example(term="\x00")  # SQLite's LIKE stopped at the NUL and matched every run
def test_search_finds_exactly_the_runs_containing_the_term(hostile, search_path, term):
    expected = literally_matching(hostile.team_a, term)
    found = set(
        Run.objects.filter(team=hostile.team_a).search(term).values_list("run_id", flat=True)
    )
    assert found == expected, (term, search_path)


@examples(60)
@given(term=terms)
@example(term="100%")
@example(term="a\x00b")
@example(term="x" * 201)
def test_the_runs_page_search_shows_exactly_the_runs_containing_the_term(
    hostile, client_as, search_path, term
):
    client = client_as(hostile.viewer)
    term = term.encode("utf-8", "replace").decode("utf-8")
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    response = client.get(url, {"q": term})
    assert response.status_code == 200
    shown = {run.run_id for run in response.context["page"].runs}
    form = RunFilterForm({"q": term})
    if form.is_valid():
        assert shown == literally_matching(hostile.team_a, form.cleaned_data["q"]), term
    else:
        # A search the form refuses (a NUL, over 200 characters) is not applied.
        assert "q" in form.errors
        assert shown == literally_matching(hostile.team_a, "")
