"""Cached run cards: never stale, never another person's token or address."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import caches
from django.db import models
from django.template.loader import get_template
from django.test import Client
from django.urls import reverse

from console.runs import cards
from console.runs.cards import with_card_data
from console.runs.models import Retry, RetryState, Run, Status
from tests.runs.test_run_list import cached_runs

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def empty_card_cache():
    caches[cards.CACHE].clear()
    yield
    caches[cards.CACHE].clear()


def run_with_lineage(world) -> Run:
    """A failed run that is itself a retry and was retried again: every part of
    a card has something to show."""
    original = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_original",
        status=Status.FAILED,
        created_at=WHEN - timedelta(hours=2),
    )
    run = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_card",
        status=Status.FAILED,
        workflow_permanent_id="wpid_card",
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
        created_at=WHEN,
        finished_at=WHEN + timedelta(minutes=3),
        app_url="https://app.skyvern.com/runs/wr_card",
        recording_url="https://recordings.example.com/wr_card.webm",
        retried_from=original,
        retried_by=world.admin,
        retried_at=WHEN - timedelta(hours=1),
    )
    newer = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_newer",
        status=Status.RUNNING,
        created_at=WHEN + timedelta(hours=1),
    )
    Retry.objects.create(
        run=run,
        number=1,
        state=RetryState.RETRIED,
        requested_by=world.operator,
        requested_at=WHEN + timedelta(hours=1),
        new_run=newer,
    )
    return with_card_data(Run.objects.filter(pk=run.pk)).get()


def render_uncached(run, team, can_retry) -> str:
    return get_template(cards.TEMPLATE).render(
        {
            "run": run,
            "team": team,
            "can_retry": can_retry,
            "csrf_token": cards.CSRF_PLACEHOLDER,
            "retry_next": cards.NEXT_PLACEHOLDER,
        }
    )


def changed(value, field):
    """A different value of the same kind, one a card would show differently."""
    if field.choices:
        return next(choice for choice, _ in field.choices if choice != value)
    if isinstance(field, models.DateTimeField):
        return (value or WHEN) + timedelta(days=3, hours=5, minutes=7)
    if isinstance(field, models.URLField):
        return "https://example.com/changed"
    if isinstance(field, (models.CharField, models.TextField)):
        return f"{value}changed"
    if isinstance(field, models.JSONField):
        return {"changed": [1, 2, 3]}
    if isinstance(field, (models.IntegerField, models.AutoField, models.BigAutoField)):
        return (value or 0) + 1000
    raise AssertionError(f"no changed value for {field!r}")


def fields_the_card_shows(obj, render, fingerprint):
    """Change each concrete field of `obj` in turn; return the fields whose
    change the card's markup shows, failing if any of them leaves the
    fingerprint (and so the cache key) as it was."""
    shown = set()
    for field in obj._meta.concrete_fields:
        if field.is_relation:
            continue  # the related objects themselves are checked below
        before_html, before_key = render(), fingerprint()
        original = getattr(obj, field.attname)
        setattr(obj, field.attname, changed(original, field))
        try:
            if render() != before_html:
                shown.add(field.name)
                assert fingerprint() != before_key, (
                    f"the card shows {obj._meta.model_name}.{field.name} but a change to it "
                    "keeps the same cache key: add it to cards.card_fingerprint()"
                )
        finally:
            setattr(obj, field.attname, original)
    return shown


@pytest.mark.parametrize("can_retry", [True, False], ids=["operator", "viewer"])
def test_every_value_a_card_shows_changes_its_cache_key(world, can_retry):
    run = run_with_lineage(world)
    retry = run.counted_retries[0]

    def render():
        return render_uncached(run, world.team_a, can_retry)

    def fingerprint():
        return cards.card_fingerprint(run)

    shown = fields_the_card_shows(run, render, fingerprint)
    # The check above is only as good as its changes: these must all show.
    assert {
        "run_id",
        "status",
        "workflow_title",
        "failure_reason",
        "created_at",
        "finished_at",
        "app_url",
        "recording_url",
        "retried_at",
    } <= shown
    assert {"state", "requested_at"} <= fields_the_card_shows(retry, render, fingerprint)

    # The people and runs a card names through its links.
    for person in (run.retried_by, retry.requested_by):
        before_html, before_key = render(), fingerprint()
        person.username = f"{person.username}-renamed"
        assert render() != before_html and fingerprint() != before_key
    for linked in (run.retried_from, retry.new_run):
        before_html, before_key = render(), fingerprint()
        linked.run_id = f"{linked.run_id}9"
        assert render() != before_html and fingerprint() != before_key

    # Another retry of the run.
    before_html, before_key = render(), fingerprint()
    run.counted_retries = [*run.counted_retries, Retry(pk=999, number=2, state="sending")]
    assert render() != before_html and fingerprint() != before_key


def test_a_page_finds_the_same_card_as_the_run_itself(world):
    """The runs page reads cards' values as plain columns (card_rows) and
    never loads the runs unless a card must be drawn: those columns must be
    exactly what the card shows of the run as a model, or the page would miss
    the cache (no lineage, lineage, and retries by someone and by nobody)."""
    run = run_with_lineage(world)
    Retry.objects.create(run=run, number=2, state=RetryState.UNKNOWN, requested_at=WHEN)
    plain = Run.objects.create(
        team=world.team_a, connection=world.connection_a, run_id="wr_plain", created_at=WHEN
    )
    queryset = Run.objects.filter(pk__in=[run.pk, plain.pk]).order_by("run_id")
    rows = cards.card_rows(queryset, 10)
    models = list(with_card_data(queryset))
    assert [row.values for row in rows] == [cards.card_values(model) for model in models]
    assert [cards.card_fingerprint(row) for row in rows] == [
        cards.card_fingerprint(model) for model in models
    ]
    assert len(rows[0].values[-1]) == 2 and rows[1].values[-1] == ()
    assert rows[0].values[-1][0][3] is None and rows[0].run_id == "wr_card"


def test_the_page_shows_a_run_as_it_is_now_after_it_changed(world, client_as):
    cached_runs(world, 3)
    client = client_as(world.operator)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    first = client.get(url).content.decode()
    newest = Run.objects.order_by("-created_at", "-id").first()
    assert f'data-run-id="{newest.run_id}"' in first

    Run.objects.filter(pk=newest.pk).update(
        status=Status.FAILED, failure_reason="Carrier portal <b>down</b>"
    )
    html = client.get(url).content.decode()
    card = re.search(rf'<article id="run-{newest.pk}".*?</article>', html, re.S).group(0)
    assert "status-failed" in card
    assert "Carrier portal &lt;b&gt;down&lt;/b&gt;" in card


def test_a_viewer_never_gets_an_operators_cached_card(world, client_as):
    cached_runs(world, 3)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    assert "retry-form" in client_as(world.operator).get(url).content.decode()
    html = client_as(world.viewer).get(url).content.decode()
    cards_html = "".join(re.findall(r"<article .*?</article>", html, re.S))
    assert cards_html.count("run-card") == 3
    assert "retry-form" not in cards_html and "csrfmiddlewaretoken" not in cards_html


def test_each_person_gets_their_own_token_and_page_to_come_back_to(world, client_as):
    """Two people see the same cached cards; each card's retry form carries the
    token of the person looking and the page they are on."""
    run_id = world.add_run(status="failed")
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    client_as(world.operator).get(url)  # fills the cache

    admin_client = Client(enforce_csrf_checks=True)
    admin_client.force_login(world.admin)
    html = admin_client.get(url, {"status": "failed"}).content.decode()
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    nexts = re.findall(r'name="next" value="([^"]*)"', html)
    assert tokens and nexts == [f"{url}?status=failed"]
    assert cards.CSRF_PLACEHOLDER not in html and cards.NEXT_PLACEHOLDER not in html

    # The token is this person's: the retry without JavaScript goes through.
    response = admin_client.post(
        reverse("runs:run_retry", kwargs={"team_slug": "acme", "run_id": run_id}),
        {"csrfmiddlewaretoken": tokens[0], "seen_retries": "0", "next": nexts[0]},
    )
    assert response.status_code == 302
    assert response["Location"] == f"{url}?status=failed"
    assert world.simulator.state.retry_count(run_id) == 1


def test_the_page_to_come_back_to_is_escaped(world, client_as):
    """A card fetched by htmx comes back to the page that fetched it, which
    the browser names in a header: whatever it says stays an attribute value."""
    runs = cached_runs(world, 3)  # the first one is completed: no refresh from Skyvern
    page = 'http://testserver/t/acme/runs/?q="><b>bold</b>'
    html = (
        client_as(world.operator)
        .get(
            reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": runs[0].run_id}),
            HTTP_HX_REQUEST="true",
            HTTP_HX_CURRENT_URL=page,
        )
        .content.decode()
    )
    assert "<b>" not in html
    assert 'name="next" value="/t/acme/runs/?q=&quot;&gt;&lt;b&gt;bold&lt;/b&gt;"' in html


def test_a_page_of_cards_with_lineage_costs_the_same_queries_as_one_card(world, client_as):
    """Lineage, retries and the people named on cards come in the page's own
    queries, never one per card, cached or not; cards from the cache need
    none of the runs loaded to draw them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    client = client_as(world.operator)

    def queries():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    run_with_lineage(world)
    one_drawn = queries()
    one_cached = queries()
    assert one_cached < one_drawn
    runs = cached_runs(world, 40)
    for number, run in enumerate(runs[:20]):
        Run.objects.filter(pk=run.pk).update(
            retried_from=runs[-1], retried_by=world.admin, retried_at=WHEN
        )
        Retry.objects.create(run=run, number=1, state=RetryState.UNKNOWN, requested_by=world.viewer)
        if number % 2:
            Retry.objects.filter(run=run).update(
                state=RetryState.RETRIED, new_run=runs[-2 - number]
            )
    assert queries() == one_drawn  # cards rendered
    assert queries() == one_cached  # cards from the cache
    html = client.get(url).content.decode()
    assert html.count("Retry outcome unknown") == 10 and html.count("Retry of ") >= 20
