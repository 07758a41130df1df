"""axe-core on every page a person can reach, as the roles that see them, in
both themes: no serious or critical violation.

axe-core is vendored for the tests only (tests/browser/vendor/, see its
README); the console never serves it. The console's CSP refuses injected
<script> tags, so the file's text is run through DevTools (`page.evaluate`),
which the page's CSP does not govern.

To check a new page, add it to PAGES under the role that sees it: a URL (with
{run}, {job}, {connection} filled from the fixture), or a Visit whose `then`
clicks through to a page that only a POST shows.
"""

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from console.bulk.tasks import bulk_retry_work
from console.runs.models import ActionKind, ActionState, KnownWorkflow, Run, RunAction
from console.teams.models import Membership
from console.theme import COOKIE as THEME_COOKIE
from console.twofactor import services as twofactor
from tests.browser.conftest import TIMEOUT_MS

# Autouse: a throttle that doesn't slow the test; the job's retries followed at once.
from tests.bulk.conftest import bulk_settings, end_new_runs, follow_at_once, make_job  # noqa: F401
from tests.runs.test_actions import webhook_only_run

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
# Every page in both themes, looked at by people.
SHOTS = Path(tempfile.gettempdir()) / "console-a11y"
# AXE_IMPACTS=minor,moderate,serious,critical lists the lesser findings too.
FAILING = tuple(os.environ.get("AXE_IMPACTS", "serious,critical").split(","))


@dataclass(frozen=True)
class Visit:
    name: str
    url: str
    # After the page loaded: reach a page only a form shows (a POST).
    then: Callable | None = None


def preview_selected(page):
    page.locator("input.bulk-pick").first.check()
    page.get_by_role("button", name="Preview the selected runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")


def sign_in_without_token(page):
    """A sign-in whose page lost its security token: the CSRF failure page."""
    page.locator("main form input[name=csrfmiddlewaretoken]").evaluate("input => input.remove()")
    page.get_by_label("Username").fill("acme-viewer")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reload and try again")


def sign_in_wrong_until_locked(page):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        page.get_by_label("Username").fill("acme-viewer")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in locked")


def open_keyboard_shortcuts(page):
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
def preview_group_retry(page):
    page.get_by_role("button", name="Retry this group").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry across teams — preview")


def open_team_switcher(page):
    page.get_by_text("Team:").click()


def unfold_a_row(page):
    page.get_by_text(re.compile(r"^Card of ")).first.click()
    expect(page.locator("tbody.run-row article.run-card").first).to_be_visible()


def show_cards(page):
    page.get_by_role("button", name="Cards").click()
    expect(page.locator("article.run-card").first).to_be_visible()


def open_theme_switch(page):
    page.locator("details.theme-switch > summary").click()


#: Every page, by the role that sees it (None: not signed in).
PAGES: dict[str | None, list[Visit]] = {
    None: [
        Visit("sign-in", "/login/"),
        Visit("sign-in, theme switch open", "/login/", then=open_theme_switch),
        Visit("CSRF failure", "/login/", then=sign_in_without_token),
        Visit("locked out", "/login/", then=sign_in_wrong_until_locked),
    ],
    "viewer": [
        Visit("runs list", "/t/acme/runs/"),
        Visit("runs list, team switcher open", "/t/acme/runs/", then=open_team_switcher),
        Visit("runs list, failed only", "/t/acme/runs/?status=failed"),
        Visit("failures by cause", "/t/acme/failures/"),
        Visit("runs list as cards", "/t/acme/runs/", then=show_cards),
        Visit("run detail", "/t/acme/runs/{run}/"),
        Visit("run detail of a retried run", "/t/acme/runs/{retried_run}/"),
        Visit("jobs list", "/t/acme/bulk/"),
        Visit("job page", "/t/acme/bulk/{job}/"),
        Visit("job page, retried only", "/t/acme/bulk/{job}/?state=retried"),
        Visit("job page while sending", "/t/acme/bulk/{queued_job}/"),
        Visit("run detail of a replayed webhook", "/t/acme/runs/{replayed_run}/"),
        Visit("webhook replay job page", "/t/acme/bulk/{replay_job}/"),
        Visit("403: connections", "/t/acme/connections/"),
        Visit("404: another team", "/t/globex/runs/"),
        Visit("two-factor: off", "/account/two-factor/"),
    ],
    "operator": [
        Visit("runs list", "/t/acme/runs/"),
        Visit("runs list, a row's card unfolded", "/t/acme/runs/", then=unfold_a_row),
        Visit("runs list as cards", "/t/acme/runs/", then=show_cards),
        Visit("bulk preview", "/t/acme/runs/?status=failed", then=preview_selected),
        Visit("runs list, keyboard shortcuts open", "/t/acme/runs/", then=open_keyboard_shortcuts),
        Visit("job page", "/t/acme/bulk/{job}/"),
        Visit("job page while sending", "/t/acme/bulk/{queued_job}/"),
        Visit("run detail", "/t/acme/runs/{run}/"),
        Visit("two-factor: setting up", "/account/two-factor/"),
        Visit("retry a run that succeeded: confirm", "/t/acme/runs/{completed_run}/retry/confirm/"),
        Visit("cancel a running run: confirm", "/t/acme/runs/{running_run}/cancel/"),
        Visit("cancel a job: confirm", "/t/acme/bulk/{queued_job}/cancel/"),
    ],
    "admin": [
        Visit("connections", "/t/acme/connections/"),
        Visit("new connection", "/t/acme/connections/new/"),
        Visit("edit connection", "/t/acme/connections/{connection}/"),
        Visit("replace key", "/t/acme/connections/{connection}/key/"),
        Visit("delete connection", "/t/acme/connections/{connection}/delete/"),
        Visit("members", "/t/acme/members/"),
        Visit("remove a member", "/t/acme/members/{viewer_membership}/remove/"),
        Visit("team audit log", "/t/acme/audit/"),
        Visit("two-factor: on", "/account/two-factor/"),
    ],
    "superuser": [
        Visit("home: every team", "/"),  # (someone in one team is sent to its runs)
        Visit("all audit", "/audit/"),
        Visit("new team", "/teams/new/"),
        Visit("failures, all teams", "/failures/"),
        Visit("group retry preview", "/failures/", then=preview_group_retry),
        Visit("jobs, all teams", "/jobs/"),
        Visit("find a run: none", "/runs/find/?run_id=wr_nothing_like_it"),
    ],
    # Signed in with a password, two-factor on: the code page comes first.
    "outsider": [Visit("two-factor: code page", "/login/code/")],
}
#: Roles signed in with their password only, the code still to give.
CODE_NOT_GIVEN = {"outsider"}


def violations_text(name: str, url: str, violations: list[dict]) -> str:
    lines = [f"{name} ({url}):"]
    for v in violations:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:8]:
            lines.append(f"      {' '.join(node['target'])}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"        {summary[:300]}")
    return "\n".join(lines)


def axe_check(page) -> list[dict]:
    """The serious and critical violations axe-core finds on the page as it is."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in results["violations"] if v["impact"] in FAILING]


@pytest.fixture
def site(live_world):
    """Runs, a retried run, a followed job and a job still waiting, and the
    two-factor states the roles' account pages show."""
    w = live_world
    run = w.add_run(
        status="failed",
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: the portal rejected the password",
    )
    others = {
        status: w.add_run(status=status, workflow_title="Upload proof of delivery")
        for status in ("completed", "running", "queued", "terminated", "timed_out", "canceled")
    }
    # Counts of two digits: axe-core passes over one character as too short to judge.
    sent = [w.add_run(status="failed", workflow_title="Sync price list") for _ in range(11)]
    job = make_job(w, sent, user=w.operator)
    bulk_retry_work.call(job.pk)
    end_new_runs(w, job, "completed", "failed")
    queued = make_job(w, [run], user=w.operator)
    # A run behind its workflow, as the sync last heard (its card says so),
    # and a webhook-only failure replayed once, and a replay job of it.
    Run.objects.filter(run_id=run).update(workflow_version=1)
    KnownWorkflow.objects.create(
        connection=w.connection_a,
        workflow_permanent_id=Run.objects.get(run_id=run).workflow_permanent_id,
        current_version=2,
        versions={},
    )
    replayed = webhook_only_run(w, "https://hooks.example.com/acme")
    RunAction.objects.create(
        run=Run.objects.get(run_id=replayed),
        kind=ActionKind.REPLAY_WEBHOOK,
        number=1,
        state=ActionState.DONE,
        requested_by=w.admin,
        target_url="https://hooks.example.com/acme",
        status_code=200,
        latency_ms=120,
    )
    replay_job = make_job(w, [replayed], user=w.operator, kind="replay_webhook")
    # Two-factor: being set up for the operator; on for the admin (who has
    # given the code) and the outsider (who has not yet).
    twofactor.start_setup(w.operator)
    for person in (w.admin, w.outsider):
        TOTPDevice.objects.create(user=person, name="Authenticator app", confirmed=True)
    return {
        "run": run,
        "retried_run": sent[0],
        "completed_run": others["completed"],
        "running_run": others["running"],
        "job": job.pk,
        "queued_job": queued.pk,
        "replayed_run": replayed,
        "replay_job": replay_job.pk,
        "connection": w.connection_a.pk,
        "viewer_membership": Membership.objects.get(user=w.viewer).pk,
    }


def signed_in_context(browser, live_server, user, *, theme: str, system: str, code_given=True):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, color_scheme=system
    )
    context.set_default_timeout(TIMEOUT_MS)
    cookies = [{"name": THEME_COOKIE, "value": theme, "url": live_server.url}]
    if user is not None:
        client = Client()
        client.force_login(user)
        device = TOTPDevice.objects.filter(user=user).first()
        if code_given and device is not None:
            # The second step done, as the code page would record it.
            session = client.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()
        cookies.append(
            {
                "name": "sessionid",
                "value": client.cookies["sessionid"].value,
                "url": live_server.url,
            }
        )
    context.add_cookies(cookies)
    return context


# Light: the system's choice (Auto). Dark: chosen on the switch while the
# system says light, so the person's choice is what is checked.
THEMES = {"light": ("auto", "light"), "dark": ("dark", "light")}


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("role", PAGES, ids=lambda role: role or "anonymous")
def test_every_page_has_no_serious_accessibility_violation(
    browser, live_server, live_world, site, role, theme
):
    user = getattr(live_world, role) if role else None
    chosen, system = THEMES[theme]
    context = signed_in_context(
        browser,
        live_server,
        user,
        theme=chosen,
        system=system,
        code_given=role not in CODE_NOT_GIVEN,
    )
    page = context.new_page()
    SHOTS.mkdir(exist_ok=True)
    failures = []
    try:
        for visit in PAGES[role]:
            url = visit.url.format(**site)
            page.goto(url)
            if chosen == "auto":
                expect(page.locator("html")).not_to_have_attribute("data-theme", re.compile("."))
            else:
                expect(page.locator("html")).to_have_attribute("data-theme", chosen)
            # Where it was meant to be (not sent to the sign-in or code page).
            assert urlsplit(page.url).path == urlsplit(url).path, (visit.name, page.url)
            if visit.then:
                visit.then(page)
            page.wait_for_load_state("networkidle")
            slug = re.sub(r"[^a-z0-9]+", "-", visit.name.lower()).strip("-")
            page.screenshot(path=str(SHOTS / f"{role or 'anonymous'}-{theme}-{slug}.png"))
            found = axe_check(page)
            if found:
                failures.append(violations_text(visit.name, page.url, found))
    finally:
        context.close()
    assert not failures, f"axe-core, {theme} theme, as {role or 'anonymous'}:\n" + "\n".join(
        failures
    )
