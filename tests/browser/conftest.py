"""Fixtures for the real-browser tests: Chromium through Playwright's sync API
against pytest-django's live server, with the shared simulator and teams.

Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM_PATH): Playwright's own
browser download is not used. Without a usable Chromium the browser tests are
skipped, unless REQUIRE_BROWSER_TESTS=1 (CI), in which case they fail.
"""

import os
import re
from dataclasses import dataclass, field

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous for a slow CI machine; a passing run never waits this long.
TIMEOUT_MS = 10_000


def browser_unavailable(reason: str):
    """Skip the browser tests, or fail them when CI requires them."""
    if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
        pytest.fail(f"{reason} — and REQUIRE_BROWSER_TESTS=1, so this is a failure.", pytrace=False)
    pytest.skip(f"{reason} (set REQUIRE_BROWSER_TESTS=1 to make this a failure)")


@pytest.fixture(scope="package")
def browser():
    """One Chromium for all browser tests (package scope: it is closed before
    the tests of other packages run)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        browser_unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        browser_unavailable(f"Playwright is not installed ({error})")

    # Playwright's sync API keeps an asyncio loop registered as running in this
    # thread, which Django takes for an async context and refuses ORM calls in
    # (SynchronousOnlyOperation). The tests are plain synchronous code, so
    # switch that check off for as long as Playwright is running, and only then.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
            )
        except PlaywrightError as error:
            browser_unavailable(f"Chromium at {CHROMIUM} did not start: {error.message}")
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def live_world(transactional_db, world):
    """The shared `world`, on a transactional database so that the live
    server's thread sees what the test wrote (pytest-django lets
    transactional_db take precedence over the `db` the shared fixture asks for)."""
    return world


@dataclass
class ConsoleWatch:
    """Everything the page reported as wrong: console errors, uncaught
    exceptions, CSP violations and failed responses from the console."""

    origin: str
    problems: list[str] = field(default_factory=list)

    def attach(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)
        # Reported from every document the page loads, including after navigations.
        page.expose_function("__reportCspViolation", self._csp)
        page.add_init_script(
            """
            document.addEventListener("securitypolicyviolation", (e) => {
              window.__reportCspViolation(
                `${e.violatedDirective} blocked ${e.blockedURI || "inline"} ` +
                `(${e.sourceFile}:${e.lineNumber})`);
            });
            """
        )

    def _console(self, message):
        if message.type == "error":
            self.problems.append(f"console.error: {message.text} @ {message.location}")
        elif message.type == "warning" and "Content Security Policy" in message.text:
            self.problems.append(f"console.warning (CSP): {message.text}")

    def _csp(self, text):
        self.problems.append(f"CSP violation: {text}")

    def _response(self, response):
        if response.url.startswith(self.origin) and response.status >= 400:
            self.problems.append(f"HTTP {response.status} {response.request.method} {response.url}")

    def _request_failed(self, request):
        # A poll cut short by the page closing at the end of a test is not a problem.
        if request.url.startswith(self.origin) and "ERR_ABORTED" not in (request.failure or ""):
            self.problems.append(
                f"request failed: {request.method} {request.url}: {request.failure}"
            )

    def assert_clean(self):
        assert not self.problems, "The browser reported problems:\n" + "\n".join(self.problems)


@pytest.fixture
def console_watch(live_server):
    return ConsoleWatch(origin=live_server.url)


@pytest.fixture
def page(browser, live_server, console_watch):
    """A fresh browser context (no cookies) and page on the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console_watch.attach(page)
    yield page
    context.close()


@pytest.fixture
def cards_layout(page, live_server):
    """The runs page as cards, chosen as a person would (its default is compact
    rows: tests/browser/test_compact_rows.py), for tests about cards."""
    from console.runs.layout import CARDS, COOKIE

    page.context.add_cookies([{"name": COOKIE, "value": CARDS, "url": live_server.url}])


def sign_in(page, user, password, *, then: str):
    """Open `then`, get sent to the login form, sign in through it, land on `then`."""
    from playwright.sync_api import expect

    page.goto(then)
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(then) + r"$"))
    # htmx is loaded with `defer`: clicks before it runs would be plain form posts.
    page.wait_for_function("() => window.htmx !== undefined")


# For `locator.evaluate`: on how many lines the element's text is laid out.
LINES_OF = """element => {
    const range = document.createRange();
    range.selectNodeContents(element);
    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
}"""


def mark_page(page) -> str:
    """Put a marker on `window` that only survives if the page is never reloaded."""
    marker = "no-reload-marker"
    page.evaluate("(m) => { window.__noReloadMarker = m; }", marker)
    return marker


def page_marker(page):
    return page.evaluate("() => window.__noReloadMarker")
