"""The runs page: newest first, status filters, search, keyset pages."""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from console.runs.listing import PAGE_SIZE, decode_cursor, run_page, team_run_page
from console.runs.models import Run, Status
from tests.helpers import page_text

HTMX_RESULTS = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-results"}
STATUSES = ["completed", "failed", "failed", "running", "canceled", "timed_out", "terminated"]


def cached_runs(world, count, *, team=None, connection=None, title="Download carrier invoices"):
    """Runs straight into the cache, one minute apart (newest has the highest index)."""
    connection = connection or world.connection_a
    start = datetime(2026, 11, 1, tzinfo=UTC)
    runs = [
        Run(
            team=connection.team,
            connection=connection,
            run_id=f"wr_{600000000000000000 + i}",
            status=STATUSES[i % len(STATUSES)],
            workflow_permanent_id=f"wpid_{i % 3}",
            workflow_title=f"{title} {i % 3}",
            created_at=start + timedelta(minutes=i),
            search_text=f"wr_{600000000000000000 + i} wpid_{i % 3} {title.lower()} {i % 3}",
        )
        for i in range(count)
    ]
    # Same timestamp for two runs: pagination must still be exact.
    runs[-1].created_at = runs[-2].created_at
    return Run.objects.bulk_create(runs)


def page(client, **params):
    return client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"}), params)


def run_ids(response):
    return [run.run_id for run in response.context["page"].runs]


def test_full_page_and_htmx_fragment(world, client_as):
    cached_runs(world, 5)
    client = client_as(world.viewer)
    full = page(client)
    assert full.status_code == 200
    assert "<html" in full.content.decode() and 'id="run-results"' in full.content.decode()
    fragment = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"}), **HTMX_RESULTS)
    html = fragment.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<section id="run-results"')


def test_newest_first_and_every_run_exactly_once_across_pages(world, client_as):
    runs = cached_runs(world, 2 * PAGE_SIZE + 7)
    expected = [r.run_id for r in sorted(runs, key=lambda r: (r.created_at, r.pk), reverse=True)]
    client = client_as(world.viewer)
    seen, params = [], {}
    for _ in range(5):
        response = page(client, **params)
        seen += run_ids(response)
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        params = {"after": cursor}
    assert seen == expected


def test_status_filter_takes_several_statuses(world, client_as):
    cached_runs(world, 40)
    client = client_as(world.viewer)
    response = page(client, status=["failed", "timed_out"])
    statuses = {run.status for run in response.context["page"].runs}
    assert statuses == {"failed", "timed_out"}
    expected = Run.objects.filter(status__in=["failed", "timed_out"]).count()
    assert len(response.context["page"].runs) == expected


def test_filters_carry_over_to_the_next_page(world, client_as):
    cached_runs(world, 300)
    client = client_as(world.viewer)
    first = page(client, status="failed")
    html = first.content.decode()
    cursor = first.context["page"].next_cursor
    assert f"status=failed&amp;after={cursor}" in html
    second = page(client, status="failed", after=cursor)
    assert {r.status for r in second.context["page"].runs} == {"failed"}
    assert not set(run_ids(first)) & set(run_ids(second))


@pytest.mark.parametrize(
    ("term", "matches"),
    [
        ("600000000000000042", {"wr_600000000000000042"}),
        ("CARRIER invoices 2", None),  # case-insensitive, title
        ("wpid_1", None),
        ("no such thing", set()),
        ("100%_", set()),  # LIKE wildcards are searched literally
    ],
)
def test_search_by_run_id_or_workflow(world, client_as, term, matches):
    runs = cached_runs(world, 60)
    client = client_as(world.viewer)
    found = set(run_ids(page(client, q=term)))
    if matches is None:
        lowered = term.lower()
        matches = {r.run_id for r in runs if lowered in r.search_text}
        assert matches
    assert found == matches


def test_search_finds_runs_saved_one_by_one_and_after_updates(world, client_as):
    run_id = world.add_run(status="failed", workflow_title="Reconcile vendor statements")
    client = client_as(world.viewer)
    assert run_ids(page(client, q="vendor statem")) == [run_id]
    run = Run.objects.get(run_id=run_id)
    run.workflow_title = "Submit customs declaration"
    run.save()
    assert run_ids(page(client, q="vendor statem")) == []
    assert run_ids(page(client, q="customs decl")) == [run_id]


@pytest.mark.parametrize(
    ("matching", "form"), [(2, "ids"), (3, "subquery"), (10, "subquery"), (11, "scan")]
)
def test_sqlite_search_picks_its_plan_by_how_many_runs_match(world, monkeypatch, matching, form):
    """Rare terms by their ids, middling ones by the FTS subquery, common ones
    by scanning newest first (console/runs/search.py); a wrong choice is slow,
    not wrong, so the choice itself is pinned here."""
    from django.db import connection

    from console.runs import search

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's FTS plan choice")
    monkeypatch.setattr(search, "PROBE_LIMIT", 2)
    monkeypatch.setattr(search, "SUBQUERY_LIMIT", 10)
    cached_runs(world, matching, title="Quarterly VAT filing")
    cached_runs(world, 4, connection=world.connection_b, title="Unrelated")
    q = search.search_filter("default", "vat fil")
    sql = str(Run.objects.filter(q).query)
    kind = "subquery" if "runs_run_search" in sql else "ids" if '"id" IN' in sql else "scan"
    assert kind == form, sql
    assert Run.objects.filter(q).count() == matching


def test_only_the_teams_own_runs(world, client_as):
    cached_runs(world, 3)
    cached_runs(world, 3, connection=world.connection_b, title="Globex secret workflow")
    client = client_as(world.viewer)
    html = page(client).content.decode()
    assert "Globex secret workflow" not in html
    assert len(run_ids(page(client))) == 3
    assert run_ids(page(client, q="globex")) == []


def test_bad_parameters_give_a_sane_page(world, client_as):
    cached_runs(world, 3)
    client = client_as(world.viewer)
    response = page(client, after="not-a-cursor", status="bogus", q="x" * 5000)
    assert response.status_code == 200
    response = page(client, after="not-a-cursor")
    assert "That page link is broken" in page_text(response)
    assert len(run_ids(response)) == 3


def test_a_filter_left_out_says_so_where_htmx_redraws(world, client_as):
    """An end date before the start date is left out of the filter; the
    field says why on a full page, and the results say it when htmx swaps
    only them (the form with its field errors stays as it was)."""
    cached_runs(world, 3)
    client = client_as(world.viewer)
    bad = {"created_from": "2030-01-02", "created_to": "2030-01-01"}
    message = "Created to: The end is before the start. That filter is left out."

    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    fragment = client.get(url, bad, **HTMX_RESULTS).content.decode()
    assert message in fragment and 'role="alert"' in fragment
    full = page_text(page(client, **bad))
    assert full.count("The end is before the start.") == 1
    assert message not in full
    fine = client.get(url, {"created_from": "2030-01-02"}, **HTMX_RESULTS).content.decode()
    assert 'id="run-results"' in fine and message not in fine


def test_count_is_capped_not_a_full_count(world, client_as, django_assert_max_num_queries):
    cached_runs(world, 30)
    client = client_as(world.viewer)
    # The counts per status, drawn with the page, are one query.
    with django_assert_max_num_queries(13):
        response = page(client)
    assert "30 runs match." in page_text(response)


# --- live updates: new runs and counts without a reload ------------------------------


def updates(client, response, **extra):
    """Follow the page's own poller, as htmx would."""
    html = response.content.decode()
    start = html.index('id="run-updates" hx-get="') + len('id="run-updates" hx-get="')
    url = html[start : html.index('"', start)].replace("&amp;", "&")
    return client.get(url, HTTP_HX_REQUEST="true")


@pytest.mark.parametrize(
    ("layout_name", "added_at_the_top", "a_run"),
    [
        ("cards", 'hx-swap-oob="afterbegin:#run-cards"', "run-card"),
        ("rows", 'hx-swap-oob="afterend:#run-rows-head"', "run-row"),
    ],
)
def test_new_runs_appear_at_the_top_of_the_first_page(
    world, client_as, settings, layout_name, added_at_the_top, a_run
):
    settings.RUNS_PAGE_POLL_SECONDS = 7
    cached_runs(world, 5)
    client = client_as(world.viewer)
    client.cookies["console_runs_layout"] = layout_name
    first = page(client, status="failed")
    # The page comes with its counts: the first poll waits its turn.
    assert 'hx-trigger="every 7s"' in first.content.decode()
    results = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"}), **HTMX_RESULTS)
    assert 'hx-trigger="load, every 7s"' in results.content.decode()

    quiet = updates(client, first)
    assert added_at_the_top not in quiet.content.decode()

    newer = world.add_run(status="failed", workflow_title="Submit customs declaration")
    older_completed = world.add_run(status="completed")
    response = updates(client, first)

    html = response.content.decode()
    assert added_at_the_top in html
    assert f'data-run-id="{newer}"' in html
    assert older_completed not in html  # not what the filter asks for
    assert "1 new run added at the top." in page_text(response)
    # The next poll asks only for what is newer still.
    assert updates(client, response).content.decode().count(a_run) == 0


def test_counts_per_status_follow_the_search(world, client_as):
    cached_runs(world, 14)
    client = client_as(world.viewer)
    response = updates(client, page(client))
    html = response.content.decode()
    assert '<small class="status-count" id="count-failed" hx-swap-oob="true">4</small>' in html
    assert '<small class="status-count" id="count-running" hx-swap-oob="true">2</small>' in html
    assert 'id="result-count" hx-swap-oob="true"' in html

    searched = updates(client, page(client, q="wr_600000000000000005"))
    assert 'id="count-failed" hx-swap-oob="true">0<' in searched.content.decode()
    assert 'id="count-timed_out" hx-swap-oob="true">1<' in searched.content.decode()


def test_a_browser_running_the_script_gets_a_searched_page_without_waiting_for_its_counts(
    world, client_as
):
    """Counting under a search or filter walks the matches once per status: a
    browser that runs console.js (its cookie says so) gets the page at once
    and asks for the counts as it loads; one without the script gets them
    drawn in. Counts without a search are stored, and always drawn in."""
    cached_runs(world, 14)
    client = client_as(world.viewer)
    client.cookies["console_js"] = "1"

    searched = page(client, q="wr_600000000000000005")
    assert set(status_counts(searched).values()) == {""}
    poll = re.search(r'<div id="run-updates"[^>]*hx-trigger="([^"]+)"', searched.content.decode())
    assert poll.group(1).startswith("load, every ")
    assert status_counts(updates(client, searched))["timed_out"] == "1"

    plain = page(client, status="failed")
    assert status_counts(plain)["failed"] == "4"
    assert 'hx-trigger="every ' in plain.content.decode()

    del client.cookies["console_js"]
    assert status_counts(page(client, q="wr_600000000000000005"))["timed_out"] == "1"


def status_counts(response) -> dict[str, str]:
    html = response.content.decode()
    return dict(
        re.findall(r'<small class="status-count" id="count-(\w+)"[^>]*>([^<]*)</small>', html)
    )


@pytest.mark.parametrize("person", ["viewer", "superuser"])
def test_counts_per_status_come_with_the_page_as_the_poll_has_them(
    world, client_as, monkeypatch, person
):
    from console.runs import listing

    cached_runs(world, 14)
    client = client_as(getattr(world, person))
    first = page(client, status="failed")  # the status filter leaves the counts as they are
    assert status_counts(first)["failed"] == "4"
    assert status_counts(first)["running"] == "2"
    assert status_counts(first) == status_counts(updates(client, first))

    searched = page(client, q="wr_600000000000000005")
    assert status_counts(searched)["failed"] == "0"
    assert status_counts(searched)["timed_out"] == "1"
    assert status_counts(searched) == status_counts(updates(client, searched))

    monkeypatch.setattr(listing, "COUNT_CAP", 3)
    capped = page(client, workflow="wpid_1")
    assert status_counts(capped)["failed"] == "1"
    assert status_counts(page(client))["failed"] == "3+"
    assert status_counts(page(client)) == status_counts(updates(client, page(client)))

    # No more runs match than the cap: every count exact, from one GROUP BY.
    monkeypatch.setattr(listing, "COUNT_CAP", 5)
    one_workflow = page(client, workflow="wpid_1")
    assert status_counts(one_workflow) == {
        **dict.fromkeys(["created", "queued", "paused", "timed_out"], "0"),
        **dict.fromkeys(["running", "completed", "failed", "canceled", "terminated"], "1"),
    }
    assert status_counts(one_workflow) == status_counts(updates(client, one_workflow))


def test_live_total_matches_the_filter_and_says_when_it_is_capped(world, client_as, monkeypatch):
    from console.runs import listing

    cached_runs(world, 14)  # 4 failed, 2 completed, 2 running among them
    client = client_as(world.viewer)
    response = updates(client, page(client, status=["failed", "running"]))
    assert "6\n    runs match." in response.content.decode()

    monkeypatch.setattr(listing, "COUNT_CAP", 3)
    capped = updates(client, page(client, status=["failed", "running"]))
    assert "More than 3\n    runs match." in capped.content.decode()
    under = updates(client, page(client, status=["running"]))
    assert "2\n    runs match." in under.content.decode()


def test_deeper_pages_get_counts_but_no_new_cards(world, client_as):
    runs = cached_runs(world, 60)
    client = client_as(world.viewer)
    second = page(client, after=page(client).context["page"].next_cursor)
    world.add_run(status="failed")
    response = updates(client, second)
    assert "run-card" not in response.content.decode()
    assert len(runs) == 60


def test_updates_without_htmx_go_to_the_runs_page(world, client_as):
    client = client_as(world.viewer)
    response = client.get(reverse("runs:run_updates", kwargs={"team_slug": "acme"}))
    assert response["Location"] == reverse("runs:run_list", kwargs={"team_slug": "acme"})


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"q": 'wr_1 "<b>&', "workflow": "Invoices", "reason": "timeout", "error_code": "X"},
        {"created_from": "2026-11-01", "created_to": "2026-11-30"},
        {"created_from": "not a day", "q": "x" * 300},
        {"category": 'AUTH_FAILURE"<', "group": "not a group <b>"},
        {"finished_from": "2026-11-01T10:15", "finished_to": "2026-11-01T09:00:00+00:00"},
    ],
)
def test_filter_inputs_drawn_in_python_match_djangos_widget_templates(data):
    """The filter inputs skip Django's widget templates for speed; what they
    draw (values, escaping, maxlength, required, bad input as typed) must
    stay what the templates would draw."""
    from django import forms
    from django.test.html import parse_html

    from console.runs.listing import DrawnInput, RunFilterForm

    form = RunFilterForm(data)
    form.is_valid()
    drawn = [name for name, field in form.fields.items() if isinstance(field.widget, DrawnInput)]
    assert drawn == [
        "q",
        "created_from",
        "created_to",
        "finished_from",
        "finished_to",
        "reason",
        "error_code",
        "category",
        "group",
    ]
    for name in drawn:
        field = form[name]
        widget = field.field.widget
        plain = next(
            base for base in type(widget).__mro__[1:] if base.__module__ == forms.widgets.__name__
        )
        plain_widget = plain(attrs=widget.attrs)
        plain_widget.input_type = widget.input_type
        plain_widget.format_value = widget.format_value  # a day shown as its first/last minute
        assert parse_html(str(field)) == parse_html(field.as_widget(widget=plain_widget)), name


@pytest.mark.parametrize("statuses", [(), ("failed",), ("failed", "canceled", "running")])
def test_a_members_page_compiled_once_is_the_page_the_orm_builds(world, statuses):
    """team_run_page() runs a member's plain page through queries compiled once
    (console/compiled.py); it must find what run_page() built by the ORM finds,
    on every page, for every member and for nobody else."""
    cached_runs(world, 130)
    cached_runs(world, 5, connection=world.connection_b)
    for person in (world.viewer, world.operator, world.outsider, world.superuser):
        for team in (world.team_a, world.team_b):
            orm_after = compiled_after = None
            for _ in range(4):
                orm = run_page(
                    Run.objects.restrict(person).filter(team=team),
                    statuses=statuses,
                    after=orm_after,
                )
                compiled = team_run_page(person, team, statuses=statuses, after=compiled_after)
                # The compiled page also brings the stored counts per status,
                # which it took its total from: they are what counting finds.
                if compiled.status_counts is not None:
                    seen = Run.objects.restrict(person).filter(team=team)
                    assert compiled.status_counts == [
                        (value, seen.filter(status=value).count(), False) for value in Status.values
                    ]
                assert replace(compiled, status_counts=None) == orm
                if orm.next_cursor is None:
                    break
                orm_after = compiled_after = decode_cursor(orm.next_cursor)
    assert team_run_page(world.outsider, world.team_a).runs == []
    failed = team_run_page(world.operator, world.team_a, statuses=("failed", "failed"))
    assert [run.status for run in failed.runs] == ["failed"] * 38
    assert (failed.total, failed.next_cursor) == (38, None)


def test_a_cursor_id_too_large_for_the_database_gives_the_same_page_as_the_orm(world):
    cached_runs(world, 60)
    after = (datetime(2026, 11, 1, 0, 30, tzinfo=UTC), 2**70)
    orm = run_page(Run.objects.restrict(world.operator).filter(team=world.team_a), after=after)

    assert team_run_page(world.operator, world.team_a, after=after) == orm
    assert len(orm.runs) == 31


def test_an_unknown_run_id_offers_sync_now_and_names_only_the_persons_other_teams(world, client_as):
    from console.teams.models import Membership, Role

    theirs = cached_runs(world, 2, connection=world.connection_b)[0]
    Run.objects.filter(pk=theirs.pk).update(run_id="wr_800000000000000001")
    theirs.refresh_from_db()
    ours = cached_runs(world, 2)[0]  # completed
    Run.objects.filter(pk=ours.pk).update(run_id="wr_700000000000000001")
    missing = "wr_123456789012345678"

    html = page(client_as(world.operator), q=missing).content.decode()
    assert f"No cached run <code>{missing}</code> in Acme Logistics: Sync now" in html
    assert reverse("sync:sync_now", args=["acme"]) in html.split("unknown-run")[1]
    assert "No runs match these filters." not in html

    # Another team's run: not named to someone outside that team.
    html = page(client_as(world.operator), q=theirs.run_id).content.decode()
    assert f"No cached run <code>{theirs.run_id}</code>" in html
    assert "Globex" not in html.split("unknown-run")[1] and "other team" not in html

    # Named, with a link, once they belong to it.
    Membership.objects.create(team=world.team_b, user=world.operator, role=Role.VIEWER)
    html = page(client_as(world.operator), q=theirs.run_id).content.decode()
    link = reverse("runs:run_list", args=["globex"]) + f"?q={theirs.run_id}"
    assert f'Cached in your other team: <a href="{link}">Globex Billing</a>.' in " ".join(
        html.split()
    )

    # A viewer is told, without a button they may not use.
    html = page(client_as(world.viewer), q=missing).content.decode()
    assert "No cached run" in html and "The next sync fetches it" in html
    assert "Sync now" not in html.split("unknown-run")[1]

    # A run the team has, hidden by a filter, is not "unknown"; nor is a word.
    html = page(client_as(world.operator), q="wr_700000000000000001", status="running")
    assert "No runs match these filters." in html.content.decode()
    assert "No cached run" not in page(client_as(world.operator), q="zebra").content.decode()
