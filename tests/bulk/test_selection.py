"""A bulk retry's selection, one value through three steps: what the runs page
sends is what the preview reads, what the preview carries forward is what the
confirmation reads, for runs ticked by hand, a whole page, and all runs
matching a filter; and what a person can't have sent (another team's runs,
ids that aren't ids, a filter that isn't one) ends in a clear message with
nothing created."""

from html.parser import HTMLParser

import pytest
from django.http import QueryDict

from console.bulk.models import BulkRetryJob
from console.bulk.selection import Scope, Selection, SelectionForm
from console.runs.models import Run
from tests.helpers import page_text

from .test_views import confirm_data, create_url, pk_of, post_pairs, preview_url, runs_url


class BulkBar(HTMLParser):
    """The runs page's bulk-retry form as a browser sees it: the inputs that
    belong to it (inside it, or joining it by its id) and its buttons."""

    def __init__(self, form_id="bulk-select"):
        super().__init__()
        self.form_id, self.inside, self.button = form_id, False, None
        self.hidden, self.boxes, self.buttons = [], {}, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == self.form_id:
            self.inside = True
        ours = self.inside or attrs.get("form") == self.form_id
        if tag == "input" and ours and attrs.get("type") == "hidden":
            self.hidden.append((attrs["name"], attrs["value"]))
        elif tag == "input" and ours and attrs.get("type") == "checkbox" and "name" in attrs:
            self.boxes[attrs["value"]] = attrs["name"]
        elif tag == "button" and ours:
            self.button = [(attrs.get("name"), attrs.get("value")), ""]

    def handle_data(self, data):
        if self.button is not None:
            self.button[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "button" and self.button is not None:
            field, text = self.button
            self.buttons[" ".join(text.split())] = field
            self.button = None

    def submit(self, button: str, *, tick=()) -> list[tuple[str, str]]:
        """The pairs a browser posts: hidden inputs, ticked boxes, the button clicked."""
        ticked = [(self.boxes[str(pk)], str(pk)) for pk in tick]
        return [*self.hidden, *ticked, self.buttons[button]]


def bulk_bar(client, query="") -> BulkBar:
    html = client.get(runs_url() + query).content.decode()
    bar = BulkBar()
    bar.feed(html)
    return bar


def runs_of(job) -> set[str]:
    return set(job.items.values_list("run__run_id", flat=True))


@pytest.fixture
def runs(world):
    """Failed runs of two workflows, a finished one, and a run of another team."""
    invoices = [world.add_run(status="failed", workflow_title="Invoices") for _ in range(3)]
    proofs = [world.add_run(status="failed", workflow_title="Proofs") for _ in range(2)]
    completed = world.add_run(status="completed", workflow_title="Invoices")
    foreign = world.add_run(world.connection_b, status="failed", workflow_title="Invoices")
    return {"invoices": invoices, "proofs": proofs, "completed": completed, "foreign": foreign}


# --- the three steps, as a person goes through them -----------------------------------------


@pytest.mark.parametrize(
    ("button", "scope", "said"),
    [
        ("Preview the selected runs", "ids", "Selected: 2 runs ticked on the runs page."),
        ("Select all 5 on this page", "page", "Selected: the runs on one page of the runs list."),
        (
            "Select all 5 runs matching this filter",
            "filter",
            "Selected: all runs matching Status: Failed",
        ),
    ],
)
def test_a_selection_made_on_the_runs_page_is_the_one_confirmed(
    world, client_as, runs, button, scope, said
):
    """Each way of choosing on the runs page: the preview names what was
    chosen, and confirming it makes a job over exactly those runs."""
    client = client_as(world.operator)
    bar = bulk_bar(client, "?status=failed")
    ticked = runs["proofs"] if scope == "ids" else []
    preview = post_pairs(client, preview_url(), bar.submit(button, tick=map(pk_of, ticked)))
    assert preview.status_code == 200
    assert said in page_text(preview)

    data = confirm_data(preview.content.decode(), reason="Portal down overnight")
    response = post_pairs(client, create_url(), data)

    assert response.status_code == 303
    job = BulkRetryJob.objects.get()
    assert job.selection["scope"] == scope
    assert runs_of(job) == set(ticked or [*runs["invoices"], *runs["proofs"]])


def test_the_preview_carries_the_selection_forward_unchanged(world, client_as, runs):
    """Previewing again (after ticking "include already-retried runs", say)
    keeps every way of choosing as it was."""
    client = client_as(world.operator)
    bar = bulk_bar(client, "?status=failed&q=Invoices")
    for button in bar.buttons:
        tick = map(pk_of, runs["invoices"][:1])
        first = post_pairs(client, preview_url(), bar.submit(button, tick=tick))
        carried = confirm_data(first.content.decode())
        again = post_pairs(client, preview_url(), carried)
        assert confirm_data(again.content.decode()) == carried, button


# --- the one form -------------------------------------------------------------------------


def posted(pairs) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in pairs:
        data.appendlist(name, str(value))
    return data


def parsed(pairs) -> Selection:
    form = SelectionForm(posted(pairs))
    assert form.is_valid(), form.errors
    return form.selection()


@pytest.mark.parametrize(
    "selection",
    [
        Selection(Scope.PICKED, ids=(3, 1, 2)),
        Selection(Scope.PAGE, ids=(7, 8)),
        Selection(
            Scope.ALL_MATCHING,
            filter=(("status", "failed"), ("status", "terminated"), ("q", "invoices")),
            upto=41,
        ),
        Selection(Scope.ALL_MATCHING, filter=(), upto=0),
    ],
)
def test_what_one_step_writes_the_next_reads_back(selection):
    assert parsed(selection.fields()) == selection
    assert parsed(parsed(selection.fields()).fields()) == selection


def test_the_runs_page_sends_the_ticked_runs_or_its_page_or_its_filter(world, client_as, runs):
    client = client_as(world.operator)
    bar = bulk_bar(client, "?status=failed&workflow=Invoices&after=")
    page = tuple(pk_of(r) for r in runs["invoices"])

    ticked = parsed(bar.submit("Preview the selected runs", tick=page[:2]))
    assert ticked == Selection(Scope.PICKED, ids=page[:2])
    whole = parsed(bar.submit("Select all 3 on this page", tick=page[:1]))
    assert (whole.scope, set(whole.ids)) == (Scope.PAGE, set(page))
    across = parsed(bar.submit("Select all 3 runs matching this filter"))
    assert across == Selection(
        Scope.ALL_MATCHING, filter=(("status", "failed"), ("workflow", "Invoices"))
    )
    team_runs = Run.objects.restrict(world.operator).filter(team=world.team_a)
    newest = Run.objects.filter(team=world.team_a).order_by("-pk").first().pk
    bounded = across.within(team_runs)
    assert bounded.upto == newest
    assert set(bounded.runs(team_runs).values_list("pk", flat=True)) == set(page)
    assert parsed(bounded.fields()) == bounded


# --- what a person can't have sent ----------------------------------------------------------


def refused_with(client, response, message: str):
    assert response.status_code == 303
    assert response["Location"].startswith(runs_url())
    assert message in page_text(client.get(response["Location"]))


@pytest.mark.parametrize("url", [preview_url, create_url])
@pytest.mark.parametrize(
    "pairs",
    [
        [("scope", "ids"), ("run", "wr_123")],
        [("scope", "ids"), ("run", "1"), ("run", "1.5")],
        [("scope", "page"), ("page_run", "9" * 40)],
        [("scope", "page"), ("page_run", "")],
        [("scope", "filter"), ("f-status", "failed"), ("run", "-")],
    ],
    ids=["run-id-for-a-pk", "a-fraction", "too-large", "empty", "beside-a-filter"],
)
def test_ids_that_are_not_run_ids_are_refused_with_a_clear_message(
    world, client_as, runs, url, pairs
):
    client = client_as(world.operator)
    response = post_pairs(client, url(), [*pairs, ("reason", "Portal down")])
    refused_with(client, response, "Those run ids are not valid.")
    assert not BulkRetryJob.objects.exists()


@pytest.mark.parametrize("scope,field", [("ids", "run"), ("page", "page_run")])
def test_only_another_teams_runs_make_nothing(world, client_as, runs, scope, field):
    client = client_as(world.operator)
    pairs = [("scope", scope), (field, pk_of(runs["foreign"]))]
    preview = page_text(post_pairs(client, preview_url(), pairs))
    assert "1 selected run is not Acme Logistics's and was left out" in preview
    assert "0 of 0 selected runs will be retried" in preview
    assert runs["foreign"] not in preview

    response = post_pairs(client, create_url(), [*pairs, ("reason", "Portal down")])
    assert response.status_code == 200
    assert "No runs are selected." in page_text(response)
    assert not BulkRetryJob.objects.exists()
    assert world.simulator.state.retry_counts() == {}


@pytest.mark.parametrize(
    "forged,message",
    [
        (
            ("f-created_from", "last tuesday"),
            "The filter is not valid: Enter a date (2026-12-06) or a date and time "
            "(2026-12-06 14:30).",
        ),
        (("f-status", "<script>"), "The filter is not valid: Select a valid choice."),
        (("f-q", "x" * 201), "The filter is not valid: Ensure this value has at most 200"),
    ],
)
def test_a_forged_filter_is_refused_with_a_clear_message(world, client_as, runs, forged, message):
    client = client_as(world.operator)
    for url in (preview_url(), create_url()):
        pairs = [("scope", "filter"), forged, ("upto", "1"), ("reason", "Portal down")]
        refused_with(client, post_pairs(client, url, pairs), message)
    assert not BulkRetryJob.objects.exists()


def test_a_filter_naming_another_teams_run_selects_none_of_it(world, client_as, runs):
    client = client_as(world.operator)
    newest = Run.objects.order_by("-pk").first().pk  # the foreign run's: the last added
    pairs = [("scope", "filter"), ("f-q", runs["foreign"]), ("upto", newest)]
    assert "0 of 0 selected runs" in page_text(post_pairs(client, preview_url(), pairs))

    response = post_pairs(client, create_url(), [*pairs, ("reason", "Portal down")])
    assert "No runs are selected." in page_text(response)
    assert not BulkRetryJob.objects.exists()
