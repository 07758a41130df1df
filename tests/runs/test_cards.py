"""Cached run cards: never stale, never another person's token or address.

A card draws a RunCard and its key is that value, so what a card shows can't
fall out of its key; these tests hold the cache to what people see when a
run, its retries, the people named or the templates change.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from console.runs import cards, layout
from console.runs.checking import Candidate
from console.runs.models import Retry, RetryState, Run, Status
from tests.conftest import make_user
from tests.helpers import page_text
from tests.runs.test_run_list import cached_runs

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cards_on_the_runs_page(client):
    """These tests are about cards: the runs page shows them (compact rows are
    its default: tests/runs/test_rows.py)."""
    client.cookies[layout.COOKIE] = layout.CARDS


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
    return run


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
    admin_client.cookies[layout.COOKIE] = layout.CARDS
    html = admin_client.get(url, {"status": "failed"}).content.decode()
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    # The cards' forms (the header's theme switch and the layout switch have their own).
    nexts = re.findall(r'name="next" value="([^"]*)"', html.split('id="run-cards"', 1)[1])
    assert tokens and nexts == [f"{url}?status=failed"]
    assert cards.FORM_FIELDS_MARK not in html

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
    runs = cached_runs(world, 3)  # the second one failed: no refresh from Skyvern
    page = 'http://testserver/t/acme/runs/?q="><b>bold</b>'
    html = (
        client_as(world.operator)
        .get(
            reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": runs[1].run_id}),
            HTTP_HX_REQUEST="true",
            HTTP_HX_CURRENT_URL=page,
        )
        .content.decode()
    )
    assert "<b>" not in html
    assert 'name="next" value="/t/acme/runs/?q=&quot;&gt;&lt;b&gt;bold&lt;/b&gt;"' in html


def test_a_page_of_cards_with_lineage_costs_the_same_queries_as_one_card(world, client_as):
    """Lineage, retries and the people named on cards come in the page's own
    queries, never one per card, cached or not; drawing a card reads nothing
    more than finding it in the cache (the card is drawn from what was read)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})
    client = client_as(world.operator)

    def queries():
        # The team's workflow list is kept apart from the cards
        # (listing.team_workflows): asked each time here, as on a new run.
        caches["default"].clear()
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    run_with_lineage(world)
    one_drawn = queries()
    one_cached = queries()
    assert one_cached == one_drawn
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


def card_on_page(client, run) -> str:
    html = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"})).content.decode()
    return re.search(rf'<article id="run-{run.pk}".*?</article>', html, re.S).group(0)


def test_a_card_shows_its_retries_and_the_people_it_names_as_they_are_now(world, client_as):
    run = run_with_lineage(world)
    client = client_as(world.operator)
    assert "Retried → " in card_on_page(client, run)

    retry = Retry.objects.get(run=run)
    retry.state, retry.new_run = RetryState.UNKNOWN, None
    retry.save()
    assert "Retry outcome unknown" in card_on_page(client, run)

    retry.checked_at, retry.check_note = WHEN + timedelta(hours=2), "One run may be it."
    retry.check_evidence = [{"run_id": "wr_candidate", "status": "running", "after_text": "4 s"}]
    retry.save()
    card = card_on_page(client, run)
    assert "One run may be it." in card and 'data-run-id="wr_candidate"' in card
    assert card.count("This is the retry") == 1

    world.operator.username = "renamed-operator"
    world.operator.save()
    world.admin.username = "renamed-admin"
    world.admin.save()
    card = card_on_page(client, run)
    assert "by renamed-operator" in card and "by renamed-admin" in card


def test_an_edited_template_that_a_card_includes_is_never_served_from_the_cache(
    world, client_as, settings, tmp_path
):
    """The template a card draws its check's runs with is part of the card: an
    edit to it (a deploy, the autoreloader) draws the cards again."""
    from django.template import engines

    real = settings.TEMPLATES[0]["DIRS"][0] / "runs" / "includes"
    ours = tmp_path / "runs" / "includes"
    ours.mkdir(parents=True)
    (ours / "retry_candidates.html").write_text((real / "retry_candidates.html").read_text())
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}
    ]
    run = run_with_lineage(world)
    Retry.objects.filter(run=run).update(
        state=RetryState.UNKNOWN,
        new_run=None,
        checked_at=WHEN,
        check_note="Checked.",
        check_evidence=[{"run_id": "wr_candidate", "status": "running"}],
    )
    client = client_as(world.operator)
    assert "This is the retry" in card_on_page(client, run)

    candidates = ours / "retry_candidates.html"
    candidates.write_text(candidates.read_text().replace("This is the retry", "It is this one"))
    for loader in engines["django"].engine.template_loaders:
        loader.reset()  # what the autoreloader does when a template changes
    card = card_on_page(client, run)
    assert "It is this one" in card and "This is the retry" not in card


def test_a_retry_whose_new_run_is_gone_from_the_cache_still_shows_its_card(world, client_as):
    run = run_with_lineage(world)
    Run.objects.filter(run_id="wr_newer").delete()
    card = card_on_page(client_as(world.operator), run)
    assert "Retried" in card and "wr_newer" not in card


# What Skyvern or a person wrote, in every field a card shows: quotes and tags.
TAG_IN = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
URL_IN = 'https://app.example.com/runs/x"><script>alert(2)</script>'


def test_every_value_a_card_shows_is_escaped_on_both_pages(world, client_as):
    person = make_user(f"ops{TAG_IN}")
    original = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_hostile_original",
        status=Status.FAILED,
        created_at=WHEN - timedelta(hours=2),
    )
    run = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_hostile",
        status=Status.FAILED,
        workflow_permanent_id=f"wpid{TAG_IN}",
        workflow_title=f"Title {TAG_IN}",
        failure_reason=f"Reason {TAG_IN}",
        created_at=WHEN,
        finished_at=WHEN + timedelta(minutes=3),
        app_url=URL_IN,
        recording_url=f"{URL_IN}.webm",
        retried_from=original,
        retried_by=person,
        retried_at=WHEN - timedelta(hours=1),
        webhook_url=f"https://hooks{TAG_IN}.example/hook",
        browser_session_id=f"pbs{TAG_IN}",
        attempt=2,
        attempts=[
            {
                "number": number,
                "status": f"failed{TAG_IN}",
                "error_codes": [f"CODE{TAG_IN}"],
                "failure_reason": f"Attempt reason {TAG_IN}",
                "retry_decision": f"retry{TAG_IN}",
                "decision_reason": f"Decided {TAG_IN}",
                "started_at": None,
                "finished_at": None,
                "next_attempt_at": None,
            }
            for number in (1, 2)
        ],
    )
    Retry.objects.create(
        run=run,
        number=1,
        state=RetryState.UNKNOWN,
        requested_by=person,
        requested_at=WHEN + timedelta(hours=1),
        proposed_runs='wr_p1 wr_p2"><script>alert(3)</script>',
        checked_at=WHEN + timedelta(hours=2),
        check_note=f"Note {TAG_IN}",
        check_evidence=[
            Candidate(
                run_id=f"wr_c{TAG_IN}",
                status=f"failed{TAG_IN}",
                created_at="",
                after_text=f"after {TAG_IN}",
                app_url=f"{URL_IN}/candidate",
            ).as_json()
        ],
    )
    failure = f"Reason {'long ' * 40}{TAG_IN}"  # folded: a summary and the full text
    long_run = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_hostile_long",
        status=Status.FAILED,
        failure_reason=failure,
        created_at=WHEN - timedelta(hours=3),
    )
    client = client_as(world.operator)
    pages = [
        client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"})),
        client.get(
            reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": "wr_hostile"})
        ),
    ]
    for response in pages:
        html = response.content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert escape(URL_IN) in html and escape(f"{URL_IN}.webm") in html
        assert escape(f"{URL_IN}/candidate") in html
        text = page_text(response)
        for shown in (
            f"Title {TAG_IN}",
            f"Reason {TAG_IN}",
            f"ops{TAG_IN}",
            f"Note {TAG_IN}",
            f"wr_c{TAG_IN}",
            f"failed{TAG_IN}",
            f"after {TAG_IN}",
            'wr_p2"><script>alert(3)</script>',
            f"re-uses browser session pbs{TAG_IN}",
        ):
            assert shown in text  # shown as the text it is, escaped once
        assert f'title="{escape(f"wpid{TAG_IN}")}"' in html
        assert "call the customer's webhook at hooks" in text
    detail_page = page_text(pages[1])
    for shown in (f"CODE{TAG_IN}", f"Attempt reason {TAG_IN}", f"retry{TAG_IN}: Decided {TAG_IN}"):
        assert shown in detail_page  # Skyvern's own attempts, as text
    runs_page = pages[0].content.decode()
    assert escape(failure) in runs_page
    assert long_run.run_id in runs_page
