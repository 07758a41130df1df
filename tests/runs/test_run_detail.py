"""The run detail page: everything about one run from the cache at once, a
lazily loaded refresh from Skyvern, the lineage both ways, and nothing from
Skyvern ever trusted (escaped text, only http(s) links, bounded output)."""

import json
import re

import pytest
import requests
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import escape

from console.runs import services, views
from console.runs.details import OUTPUT_SHOWN, _reindent
from console.runs.models import Retry, RetryState, Run
from console.runs.templatetags.run_detail import duration, safe_http_url
from console.skyvern.client import SkyvernClient
from tests.helpers import page_text

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-details"}
SECTIONS = [
    "h-status",
    "h-failure",
    "h-output",
    "h-recording",
    "h-screenshots",
    "h-files",
    "h-parameters",
    "h-lineage",
]
# What redraws the details whatever the run's state: news from a card, once drawn (the
# answer to Retry, Check or a link; a card's poll that found its run moved on).
ALWAYS_REFRESH_ON = "run-changed from:body"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def detail_url(run_id, team="acme"):
    return reverse("runs:run_detail", kwargs={"team_slug": team, "run_id": run_id})


def refresh_url(run_id, team="acme"):
    return reverse("runs:run_detail_refresh", kwargs={"team_slug": team, "run_id": run_id})


def retry(client, run_id, *, seen=0, again=False):
    data = {"seen_retries": str(seen), **({"confirm_again": "yes"} if again else {})}
    url = reverse("runs:run_retry", kwargs={"team_slug": "acme", "run_id": run_id})
    return client.post(url, data, HTTP_HX_REQUEST="true")


def no_script_injection(html: str):
    """Nothing from Skyvern may become markup: no script, handler or js: URL."""
    assert "<script>" not in html
    assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*(javascript|data|vbscript):""", html, re.I)


def cached(run_id) -> Run:
    return Run.objects.get(run_id=run_id)


def snapshot(run_id):
    run = cached(run_id)
    return (run.status, run.synced_at, run.finished_at, run.output, run.raw, run.app_url)


# --- roles, the page's shape ----------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "sees_retry"), [("viewer", False), ("operator", True), ("admin", True)]
)
def test_the_page_for_each_role(world, client_as, person, sees_retry):
    run_id = world.add_run(status="failed", failure_reason="Login failed: invalid credentials")
    response = client_as(getattr(world, person)).get(detail_url(run_id))

    assert response.status_code == 200
    html = response.content.decode()
    assert ("retry-form" in html) is sees_retry
    assert (">Retry</button>" in html) is sees_retry
    # The card at the top (the shared partial), then every section.
    assert html.index('class="run-card') < html.index('id="run-details"')
    assert f'data-run-id="{run_id}"' in html
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    # The details fetch themselves fresh from Skyvern once the page is there.
    assert f'hx-get="{refresh_url(run_id)}" hx-swap="outerHTML"' in html
    assert f'hx-trigger="load, {ALWAYS_REFRESH_ON}"' in html
    # Said only while htmx asks (console.css); without JavaScript, a Refresh link.
    assert '<span class="checking-note">; checking Skyvern for news…</span>' in html
    assert f'<a href="{refresh_url(run_id)}">Refresh</a>' in html


def test_opening_the_page_never_waits_on_skyvern(world, client_as, monkeypatch):
    run_id = world.add_run(status="failed")

    def no_skyvern(connection):
        raise AssertionError("the page called Skyvern")

    monkeypatch.setattr(services, "client_for", no_skyvern)
    response = client_as(world.viewer).get(detail_url(run_id))
    assert response.status_code == 200
    assert "Couldn't refresh" not in page_text(response)


def test_every_section_with_the_simulators_data_after_a_refresh(world, client_as):
    run_id = world.add_run(
        status="running",
        workflow_title="Download carrier invoices",
        parameters={"carrier": "Maersk", "billing_month": "2026-03", "max_pages": 12},
    )
    world.simulator.state.set_status(run_id, "completed")
    client = client_as(world.operator)

    fragment = client.get(refresh_url(run_id), **HTMX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode()
    run = cached(run_id)
    assert run.status == "completed"
    detail = client.get(detail_url(run_id))  # the page, from the cache
    files = run.raw["downloaded_files"]
    assert files and run.screenshot_urls and run.recording_url and run.output

    for response in (fragment, detail):
        html = response.content.decode()
        text = page_text(response)
        for section in SECTIONS:
            assert f'id="{section}"' in html, section
        # Status and a timeline with the time between its steps.
        assert "Completed" in text
        for step in ("Created", "Queued", "Started", "Finished"):
            assert step in text
        assert "+1.0 s after created" in text and "after queued" in text
        assert "after started" in text and "from creation to the end" in text
        assert f"{run.raw['step_count']} steps" in text
        # The app page, the recording (a GIF: embedded as an image), screenshots.
        assert f'href="{run.app_url}"' in html.replace("&amp;", "&")
        recording = run.recording_url
        assert f'href="{recording}"' in html.replace("&amp;", "&")
        assert f'<img class="recording-player" src="{recording}"' in html.replace("&amp;", "&")
        for shot in run.screenshot_urls:
            assert (
                f'<a href="{shot}" target="_blank" rel="noopener noreferrer"><img src="{shot}"'
                in html
            )
        # Downloaded files: name, size, link.
        for item in files:
            assert f'href="{item["url"]}"' in html
            size = " ".join(filesizeformat(item["file_size"]).split())
            assert f"{item['filename']} {size}" in text
        # Output, pretty-printed; parameters as a table.
        assert escape(json.dumps(run.output, indent=2, ensure_ascii=False)) in html
        assert "carrier Maersk" in text and "billing_month 2026-03" in text
        assert "max_pages 12" in text
    # The recording really is a GIF, the screenshots PNGs.
    assert requests.get(run.recording_url, timeout=5).headers["Content-Type"] == "image/gif"
    assert requests.get(run.screenshot_urls[0], timeout=5).headers["Content-Type"] == "image/png"


def test_failure_reason_in_full_and_the_errors_list(world, client_as):
    reason = "Could not log in to the carrier portal. " * 12  # long: the card folds it
    errors = [
        {"error_code": "LOGIN_FAILED", "reasoning": "Password rejected", "confidence_float": 0.93},
        {"error_code": "NAVIGATION", "message": "Timed out on /billing", "step": 4},
    ]
    run_id = world.add_run(status="failed", failure_reason=reason.strip(), errors=errors)
    response = client_as(world.viewer).get(detail_url(run_id))
    text = page_text(response)
    assert reason.strip() in text
    assert "LOGIN_FAILED Password rejected confidence_float 0.93" in text
    assert "NAVIGATION Timed out on /billing step 4" in text


@pytest.mark.parametrize(
    ("url", "player"),
    [
        ("https://cdn.example.com/rec/run.mp4?sig=abc", "<video"),
        ("https://cdn.example.com/rec/run.WEBM", "<video"),
        ("https://cdn.example.com/rec/run.gif?x=1", '<img class="recording-player"'),
        ("https://cdn.example.com/rec/run", None),
    ],
)
def test_the_recording_player_follows_the_url(world, client_as, url, player):
    run_id = world.add_run(status="completed")
    Run.objects.filter(run_id=run_id).update(recording_url=url)
    html = client_as(world.viewer).get(detail_url(run_id)).content.decode()
    assert f'href="{url.replace("&", "&amp;")}"' in html
    if player == "<video":
        assert f'<video class="recording-player" controls preload="metadata" src="{url}"' in html
    for other in ("<video", '<img class="recording-player"'):
        if other != player:
            assert other not in html


def test_an_archived_recording_is_said_to_be_archived(world, client_as):
    run_id = world.add_run(status="completed")
    run = cached(run_id)
    Run.objects.filter(pk=run.pk).update(
        recording_url="", raw={**run.raw, "recording_url": None, "recording_archived": True}
    )
    response = client_as(world.viewer).get(detail_url(run_id))
    assert "The recording has been archived" in page_text(response)
    assert "recording-player" not in response.content.decode()


def test_a_run_not_started_yet(world, client_as):
    run_id = world.add_run(status="created")
    response = client_as(world.operator).get(detail_url(run_id))
    text = page_text(response)
    assert response.status_code == 200
    assert "No recording yet: the run has not started" in text
    assert "No screenshots" in text and "No output" in text
    assert "since created, still going" in text
    assert ">Retry</button>" not in response.content.decode()


def test_a_run_only_listed_so_far_shows_what_is_known(world, client_as):
    """A run cached from the listing has no details (raw is a WorkflowRun) yet."""
    run_id = world.add_run(status="failed", failure_reason="Portal down")
    Run.objects.filter(run_id=run_id).update(
        raw={"workflow_run_id": run_id, "status": "failed"}, output=None, screenshot_urls=[]
    )
    response = client_as(world.viewer).get(detail_url(run_id))
    text = page_text(response)
    assert response.status_code == 200
    assert "Portal down" in text and "Parameters not known yet" in text
    assert "Step count unknown" in text


# --- nothing from Skyvern is trusted ------------------------------------------------------


def test_hostile_html_from_skyvern_is_escaped_everywhere(world, client_as):
    run_id = world.add_run(
        status="failed",
        workflow_title=f"Invoices {HOSTILE}",
        failure_reason=f"Failed {HOSTILE}",
        errors=[{"error_code": HOSTILE, "reasoning": HOSTILE, HOSTILE: HOSTILE}],
        parameters={HOSTILE: HOSTILE, "nested": {"html": HOSTILE}},
    )
    run = cached(run_id)
    output = {"note": HOSTILE, "close": "</code></pre></details><script>alert(2)</script>"}
    Run.objects.filter(pk=run.pk).update(output=output, raw={**run.raw, "output": output})
    response = client_as(world.operator).get(detail_url(run_id))

    html = response.content.decode()
    no_script_injection(html)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;/code&gt;&lt;/pre&gt;&lt;/details&gt;&lt;script&gt;alert(2)" in html
    text = page_text(response)
    assert f"Failed {HOSTILE}" in text  # shown, as text
    assert HOSTILE in text.split("Parameters", 1)[1]
    # The same for the fragment.
    fragment = client_as(world.operator).get(refresh_url(run_id), **HTMX).content.decode()
    no_script_injection(fragment)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in fragment


def test_long_parameter_values_are_shortened(world, client_as):
    run_id = world.add_run(
        status="failed", parameters={"blob": "A" * 5000, "items": list(range(400))}
    )
    text = page_text(client_as(world.viewer).get(detail_url(run_id)))
    assert "A" * 200 not in text
    assert re.search(r"blob A{199}… ", text)
    assert re.search(r"items \[0, 1, 2, .{100,200}…", text)


@pytest.mark.parametrize(
    "evil",
    [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
    ],
)
def test_non_http_urls_from_skyvern_are_never_links(world, client_as, evil):
    run_id = world.add_run(status="completed")
    run = cached(run_id)
    files = [{"url": evil, "filename": "invoice.pdf", "file_size": 10}]
    Run.objects.filter(pk=run.pk).update(
        app_url=evil,
        recording_url=evil,
        screenshot_urls=[evil, "https://ok.example/shot.png"],
        raw={**run.raw, "downloaded_files": files},
    )
    response = client_as(world.operator).get(detail_url(run_id))
    html = response.content.decode()
    no_script_injection(html)
    assert "javascript:" not in re.sub(r"<code[^>]*>.*?</code>", "", html, flags=re.S).lower()
    text = page_text(response)
    assert "App page (not a web link, so not linked)" in text
    assert "Recording (not a web link, so not linked)" in text
    assert "Screenshot 1 (not a web link)" in text
    assert "invoice.pdf (not a web link" in text
    assert '<a href="https://ok.example/shot.png"' in html  # the good one still is


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://api.skyvern.com/runs/wr_1", True),
        ("http://127.0.0.1:8865/recordings/wr_1.gif?expires=1&signature=ab", True),
        ("HTTPS://EXAMPLE.COM/x", True),
        ("javascript:alert(1)", False),
        ("JAVASCRIPT:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\nscript:alert(1)", False),
        ("data:image/png;base64,AAAA", False),
        ("//evil.example/x", False),
        ("/relative/path", False),
        ("https://", False),
        ("https://host:99999999/", False),
        ("https://exa mple.com/", False),
        ("", False),
        (None, False),
        (["https://a.example/"], False),
    ],
)
def test_safe_http_url(url, safe):
    assert safe_http_url(url) == (url if safe else "")


def test_durations_read_like_speech():
    from datetime import timedelta

    assert duration(timedelta(milliseconds=250)) == "250 ms"
    assert duration(timedelta(seconds=4)) == "4.0 s"
    assert duration(timedelta(seconds=42)) == "42 s"
    assert duration(timedelta(minutes=2, seconds=55)) == "2 min 55 s"
    assert duration(timedelta(hours=1, minutes=3)) == "1 h 3 min"
    assert duration(timedelta(days=2, hours=5)) == "2 d 5 h"
    assert duration(timedelta(seconds=-3)) == "—"


# --- huge output -----------------------------------------------------------------------


def test_a_huge_output_is_cut_and_the_page_stays_small(world, client_as):
    run_id = world.add_run(status="completed")
    run = cached(run_id)
    rows = [
        {"invoice": f"INV-{i:06d}", "carrier": "Maersk", "lines": list(range(12))}
        for i in range(60_000)
    ]
    output = {"rows": rows, "total": len(rows)}
    size = len(json.dumps(output))
    assert size > 5_000_000
    Run.objects.filter(pk=run.pk).update(output=output, raw={**run.raw, "output": output})

    response = client_as(world.viewer).get(detail_url(run_id))

    assert response.status_code == 200
    assert len(response.content) < OUTPUT_SHOWN + 30_000
    text = page_text(response)
    assert re.search(r"output truncated: \d+(\.\d)? MB", text)
    html = response.content.decode()
    assert '<details class="output">' in html
    # Pretty-printed (PostgreSQL's jsonb reorders keys, so only the layout is checked).
    shown = html.replace("&quot;", '"')
    assert '{\n  "rows": [\n    {\n      "' in shown
    assert '\n      "invoice": "INV-000000"' in shown
    assert "INV-059999" not in html
    # Neither the output nor Skyvern's JSON (which holds it again) was loaded whole.
    assert {"raw", "output"} <= response.context["run"].get_deferred_fields()


def test_a_large_output_is_folded_and_a_small_one_is_not(world, client_as):
    run_id = world.add_run(status="completed")
    run = cached(run_id)
    client = client_as(world.viewer)
    large = {"rows": [{"n": i} for i in range(200)]}
    Run.objects.filter(pk=run.pk).update(output=large)
    html = client.get(detail_url(run_id)).content.decode()
    assert '<details class="output">' in html and "output truncated" not in html
    assert '"n": 199' in html.replace("&quot;", '"')
    Run.objects.filter(pk=run.pk).update(output={"ok": True})
    html = client.get(detail_url(run_id)).content.decode()
    assert '<details class="output">' not in html
    assert '{\n  "ok": true\n}' in html.replace("&quot;", '"')


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2, {"c": 'x,y:{}[]"q\\'}], "e": {}, "f": []},
        [],
        {},
        "text",
        [[{}]],
        {"k": "é", "n": None, "t": True, "x": -1.5e10},
    ],
)
def test_reindenting_compact_json_matches_json_dumps(value):
    for separators in ((", ", ": "), (",", ":")):
        compact = json.dumps(value, separators=separators)
        assert _reindent(compact, stop_after=10**9) == json.dumps(value, indent=2)


# --- lineage ---------------------------------------------------------------------------


def test_lineage_both_ways_after_retries_through_the_retry_view(world, client_as):
    original = world.add_run(status="failed", failure_reason="Portal timed out")
    operator = client_as(world.operator)
    assert retry(operator, original, seen=0).status_code == 200
    first = Run.objects.get(retried_from__run_id=original)

    # The original's page lists the retry: number, who, when, state, the new run.
    response = operator.get(detail_url(original))
    html, text = response.content.decode(), page_text(response)
    lineage = text.split("Retries of this run", 1)[1]
    assert re.search(rf"1 acme-operator \S+ \S+ UTC Retried {first.run_id} Created", lineage)
    assert f'<a href="{detail_url(first.run_id)}">{first.run_id}</a>' in html
    assert "Not a retry started from this console" in text

    # The new run's page says which run it retried, who and when.
    text = page_text(operator.get(detail_url(first.run_id)))
    assert re.search(
        rf"This run is retry #1 of {original} \(failed\), started by acme-operator on \S+ \S+ UTC",
        text,
    )
    assert "Retry chain" not in text  # the original was not itself a retry

    # The retry fails in turn and is retried: its page shows the whole chain.
    world.simulator.state.set_status(first.run_id, "failed")
    assert operator.get(refresh_url(first.run_id), **HTMX).status_code == 200
    assert retry(operator, first.run_id, seen=0).status_code == 200
    second = Run.objects.get(retried_from=first)
    html = operator.get(detail_url(second.run_id)).content.decode()
    chain = html.split('aria-label="Retry chain"', 1)[1].split("</nav>", 1)[0]
    assert chain.index(original) < chain.index(first.run_id) < chain.index(second.run_id)
    assert f'<li aria-current="page">{second.run_id}</li>' in chain

    # Attempts that created nothing, or may have, are listed with their error.
    world.simulator.state.configure(busy=True)
    retry(operator, original, seen=1, again=True)
    world.simulator.state.configure(busy=False, error_rates={500: 1.0})
    retry(operator, original, seen=1, again=True)
    states = list(Retry.objects.filter(run__run_id=original).values_list("state", flat=True))
    assert sorted(states) == sorted([RetryState.RETRIED, RetryState.FAILED, RetryState.UNKNOWN])
    text = page_text(operator.get(detail_url(original)))
    assert "Not retried Skyvern is busy and created no run" in text
    assert (
        "Outcome unknown — check Skyvern before retrying again Skyvern had an internal error"
        in text
    )
    assert text.count("acme-operator") >= 3


def test_the_page_follows_the_run_its_retry_made(world, client_as):
    original = world.add_run(status="failed")
    operator = client_as(world.operator)
    retry(operator, original)
    new = cached(Run.objects.get(retried_from__run_id=original).run_id)
    card_url = reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": new.run_id})

    # The page: the run's card, then the new run's card, which follows it as on the runs page.
    html = operator.get(detail_url(original)).content.decode()
    slot = html.split('<div id="run-card-slot"', 1)[1].split("</div>", 1)[0]
    assert slot.index(f'data-run-id="{original}"') < slot.index(f'data-run-id="{new.run_id}"')
    assert f'hx-get="{card_url}?shown=created" hx-trigger="every 3s"' in slot
    # The details (the retries table) redraw when a card finds its run moved on.
    details = html.split('<div id="run-details"', 1)[1].split(">", 1)[0]
    assert "run-changed from:body" in details

    # The new run finishes at Skyvern; its card's poll finds out and says so...
    world.simulator.state.set_status(new.run_id, "completed")
    Run.objects.filter(pk=new.pk).update(synced_at=new.synced_at.replace(year=2000))
    polled = operator.get(card_url, {"shown": "created"}, HTTP_HX_REQUEST="true")
    assert "run-changed" in polled.headers["HX-Trigger-After-Settle"]

    # ...and the refreshed details show it finished, its card (out of band) too.
    response = operator.get(refresh_url(original), **HTMX)
    html = response.content.decode()
    lineage = page_text(response).split("Retries of this run", 1)[1]
    assert re.search(rf"1 acme-operator \S+ \S+ UTC Retried {new.run_id} Completed", lineage)
    slot = html.split('<div id="run-card-slot"', 1)[1]
    assert slot.startswith(' class="run-card-slot" hx-swap-oob="true">')
    new_card = slot.split(f'data-run-id="{new.run_id}"', 1)[1].split("</article>", 1)[0]
    assert "Completed" in new_card and "hx-trigger" not in new_card


def test_a_run_never_retried_has_its_card_alone(world, client_as):
    run_id = world.add_run(status="failed")
    html = client_as(world.viewer).get(detail_url(run_id)).content.decode()
    slot = html.split('<div id="run-card-slot"', 1)[1].split("</div>", 1)[0]
    assert slot.count("<article ") == 1


def test_lineage_stays_within_the_team(world, client_as):
    """A run whose parent belongs to another team shows no link into that team."""
    mine = world.add_run(status="failed")
    theirs = world.add_run(world.connection_b, status="failed")
    Run.objects.filter(run_id=mine).update(retried_from=cached(theirs))
    Run.objects.filter(run_id=theirs).update(retried_from=cached(mine))  # and a cycle
    response = client_as(world.viewer).get(detail_url(mine))
    assert response.status_code == 200
    assert "/t/globex/" not in response.content.decode()
    assert "Retry chain" not in page_text(response)


# --- the lazy refresh ---------------------------------------------------------------------


def test_the_refresh_fragment_brings_news_and_the_card_along(world, client_as):
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed", failure_reason="Carrier portal is down")
    client = client_as(world.operator)

    response = client.get(refresh_url(run_id), **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="run-details"')
    text = page_text(response)
    assert "Up to date with Skyvern" in text
    assert "Failed" in text and "Carrier portal is down" in text
    assert cached(run_id).status == "failed"
    # The card is swapped too (out of band): now finished, so it can be retried.
    card = html.split('<div id="run-card-slot"', 1)[1]
    assert card.startswith(' class="run-card-slot" hx-swap-oob="true">')
    assert "status-failed" in card and ">Retry</button>" in card
    # Finished: the details stop refreshing themselves, except after a click on Retry.
    details = html.split('<div id="run-card-slot"', 1)[0]
    assert f'hx-trigger="{ALWAYS_REFRESH_ON}"' in details


def test_a_run_still_going_keeps_refreshing(world, client_as):
    run_id = world.add_run(status="queued")
    world.simulator.state.set_status(run_id, "running")
    html = client_as(world.viewer).get(refresh_url(run_id), **HTMX).content.decode()
    assert f'hx-trigger="load delay:5s, {ALWAYS_REFRESH_ON}"' in html
    assert "Running" in html and cached(run_id).status == "running"


def test_a_retry_being_sent_keeps_the_details_refreshing(world, client_as):
    run_id = world.add_run(status="failed")
    Retry.objects.create(run=cached(run_id), number=1, requested_by=world.operator)
    response = client_as(world.viewer).get(refresh_url(run_id), **HTMX)
    assert f'hx-trigger="load delay:5s, {ALWAYS_REFRESH_ON}"' in response.content.decode()
    assert re.search(r"1 acme-operator \S+ \S+ UTC Sending to Skyvern", page_text(response))


def test_when_skyvern_fails_the_fragment_says_so_and_the_cache_stays(world, client_as):
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "completed")
    before = snapshot(run_id)
    world.simulator.state.configure(error_rates={500: 1.0})

    response = client_as(world.viewer).get(refresh_url(run_id), **HTMX)

    assert response.status_code == 200
    text = page_text(response)
    assert re.search(
        r"Couldn't refresh from Skyvern: Skyvern had an internal error.*\(HTTP 500\); "
        r"showing the cached copy",
        text,
    )
    assert snapshot(run_id) == before
    assert "Running" in text  # the cached details are still there
    for section in SECTIONS:
        assert f'id="{section}"' in response.content.decode()


def test_without_javascript_refresh_asks_skyvern_then_goes_back_to_the_page(world, client_as):
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed", failure_reason="Carrier portal is down")
    client = client_as(world.viewer)
    page = client.get(detail_url(run_id))
    assert f'<a href="{refresh_url(run_id)}">Refresh</a>' in page.content.decode()

    response = client.get(refresh_url(run_id), follow=True)

    assert response.redirect_chain == [(detail_url(run_id), 302)]
    text = page_text(response)
    assert "Refreshed from Skyvern just now." in text
    assert "Carrier portal is down" in text
    assert cached(run_id).status == "failed"


def test_without_javascript_a_failed_refresh_says_so_and_the_cache_stays(
    world, client_as, monkeypatch
):
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "completed")
    before = snapshot(run_id)
    world.simulator.state.configure(error_rates={500: 1.0})
    waited = []
    real_get_run = SkyvernClient.get_run

    def get_run(client, run_id):
        waited.append(client.timeout[1])
        return real_get_run(client, run_id)

    monkeypatch.setattr(SkyvernClient, "get_run", get_run)

    response = client_as(world.viewer).get(refresh_url(run_id), follow=True)

    assert re.search(
        r"Couldn't refresh from Skyvern: Skyvern had an internal error.*\(HTTP 500\)\.",
        page_text(response),
    )
    assert snapshot(run_id) == before
    assert waited == [views.NO_JS_REFRESH_TIMEOUT]  # a person is waiting: not the usual 20 s


# --- answers on the page's cards -------------------------------------------------------------
# The answer to Retry, Check or "This is the retry" is drawn first; then the page hears
# `run-changed` and redraws its details, keeping any card that shows the person a message.

SETTLED = "HX-Trigger-After-Settle"


def told_the_page(response, run_id) -> bool:
    """The answer triggers `run-changed` once drawn, and nothing before."""
    assert "HX-Trigger" not in response.headers  # never before the answer is drawn
    return json.loads(response.headers.get(SETTLED, "{}")) == {"run-changed": {"run_id": run_id}}


def check_url(run_id, number=1, name="runs:retry_check"):
    return reverse(name, kwargs={"team_slug": "acme", "run_id": run_id, "number": number})


def answered_marker(run_id) -> str:
    return f'<input type="hidden" name="answered" value="{run_id}" form="card-answers">'


def test_the_details_follow_the_cards_answers_not_a_timer(world, client_as):
    run_id = world.add_run(status="failed")
    html = client_as(world.operator).get(detail_url(run_id)).content.decode()
    details = html.split('<div id="run-details"', 1)[1].split(">", 1)[0]
    assert 'hx-trigger="load, run-changed from:body"' in details
    assert "submit" not in details  # no redraw a while after a click, whatever came of it
    # A refresh asked for later replaces one still on its way; it sends the cards
    # showing an answer (they join this form).
    assert 'hx-sync="this:replace"' in details and 'hx-include="#card-answers"' in details
    assert '<form id="card-answers" hidden></form>' in html


def test_every_answer_to_a_retry_tells_the_page_once_drawn(world, client_as):
    run_id = world.add_run(status="failed")
    operator = client_as(world.operator)

    done = retry(operator, run_id)
    assert told_the_page(done, run_id)
    assert 'role="alert"' not in done.content.decode()
    assert 'name="answered"' not in done.content.decode()  # nothing to keep: a redraw is the same

    # Skyvern is busy: the card says so, and says it shows the person an answer.
    world.simulator.state.configure(busy=True)
    busy = retry(operator, run_id, seen=1, again=True)
    html = busy.content.decode()
    assert told_the_page(busy, run_id)
    assert "created no run" in page_text(busy) and answered_marker(run_id) in html

    # Not sent: the page was behind a colleague's retry; the page catches up too.
    world.simulator.state.configure(busy=False)
    behind = retry(operator, run_id, seen=0)
    assert told_the_page(behind, run_id)
    assert "Not sent again" in page_text(behind)
    assert answered_marker(run_id) in behind.content.decode()


def test_a_retry_without_javascript_comes_back_to_the_page_with_its_message(world, client_as):
    run_id = world.add_run(status="failed")
    world.simulator.state.configure(busy=True)
    url = reverse("runs:run_retry", kwargs={"team_slug": "acme", "run_id": run_id})
    operator = client_as(world.operator)
    response = operator.post(url, {"seen_retries": "0", "next": detail_url(run_id)})
    assert response.status_code == 302 and response["Location"] == detail_url(run_id)
    assert SETTLED not in response.headers
    page = operator.get(detail_url(run_id))
    assert "created no run" in page_text(page)
    assert 'name="answered"' not in page.content.decode()  # a message above, not on the card


def test_check_and_link_answers_tell_the_page_once_drawn(world, client_as):
    run_id = world.add_run(status="failed", workflow_title="Download carrier invoices")
    world.simulator.state.configure(drop_connection=True)
    retry(client_as(world.operator), run_id)
    world.simulator.state.configure(drop_connection=False)
    assert Retry.objects.get().state == RetryState.UNKNOWN
    operator = client_as(world.operator)

    checked = operator.post(check_url(run_id), HTTP_HX_REQUEST="true")
    assert checked.status_code == 200 and told_the_page(checked, run_id)
    assert 'name="answered"' not in checked.content.decode()  # what it found is kept anyway

    refused = operator.post(
        check_url(run_id, name="runs:retry_link"), {"run_id": "wr_nowhere"}, HTTP_HX_REQUEST="true"
    )
    assert told_the_page(refused, run_id)
    assert answered_marker(run_id) in refused.content.decode()

    # Without JavaScript: back to the page, nothing to trigger.
    plain = operator.post(check_url(run_id), {"next": detail_url(run_id)})
    assert plain.status_code == 302 and SETTLED not in plain.headers


def test_a_refresh_keeps_the_card_that_shows_an_answer(world, client_as):
    original = world.add_run(status="failed")
    operator = client_as(world.operator)
    retry(operator, original)
    new = cached(Run.objects.get(retried_from__run_id=original).run_id)
    first = cached(original)

    plain = operator.get(refresh_url(original), **HTMX).content.decode()
    slot = plain.split('<div id="run-card-slot"', 1)[1]
    assert f'data-run-id="{original}"' in slot and f'data-run-id="{new.run_id}"' in slot
    assert "hx-preserve" not in slot

    # The run's card on the page shows the person an answer: only its place is sent,
    # for htmx to keep the page's own card there; the other card is drawn as ever.
    kept = operator.get(refresh_url(original), {"answered": original}, **HTMX).content.decode()
    slot = kept.split('<div id="run-card-slot"', 1)[1]
    assert f'<article id="run-{first.pk}" class="run-card" hx-preserve></article>' in slot
    assert f'data-run-id="{original}"' not in slot
    assert f'data-run-id="{new.run_id}"' in slot
    details = kept.split('<div id="run-card-slot"', 1)[0]
    assert "Retries of this run" in details

    # The new run's card shows an answer instead: that one is kept.
    kept = operator.get(refresh_url(original), {"answered": new.run_id}, **HTMX)
    slot = kept.content.decode().split('<div id="run-card-slot"', 1)[1]
    assert f'<article id="run-{new.pk}" class="run-card" hx-preserve></article>' in slot
    assert f'data-run-id="{original}"' in slot and f'data-run-id="{new.run_id}"' not in slot


def test_answered_names_only_ever_match_cards(world, client_as):
    run_id = world.add_run(status="failed")
    response = client_as(world.viewer).get(
        refresh_url(run_id), {"answered": ["wr_elsewhere", HOSTILE]}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200 and "hx-preserve" not in html
    assert f'data-run-id="{run_id}"' in html and "wr_elsewhere" not in html
    no_script_injection(html)
    # The full page draws its cards whatever is asked.
    page = client_as(world.viewer).get(detail_url(run_id), {"answered": run_id})
    assert "hx-preserve" not in page.content.decode()


# --- not found ------------------------------------------------------------------------------


def test_another_teams_run_is_not_found(world, client_as):
    theirs = world.add_run(world.connection_b, status="failed")
    mine = world.add_run(status="failed")
    admin = client_as(world.admin)
    assert admin.get(detail_url(theirs)).status_code == 404
    assert admin.get(refresh_url(theirs), **HTMX).status_code == 404
    outsider = client_as(world.outsider)
    assert outsider.get(detail_url(mine)).status_code == 404
    assert outsider.get(detail_url(mine, team="globex")).status_code == 404
    assert outsider.get(refresh_url(mine, team="globex"), **HTMX).status_code == 404


def test_an_unknown_run_is_not_found(world, client_as):
    client = client_as(world.viewer)
    assert client.get(detail_url("wr_424242424242424242")).status_code == 404
    assert client.get(refresh_url("wr_424242424242424242"), **HTMX).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/t/acme/runs/not-a-run/",
        "/t/acme/runs/tsk_123/",
        "/t/acme/runs/wr_/",
        "/t/acme/runs/wr_%3Cscript%3E/",
        f"/t/acme/runs/wr_{'1' * 101}/",
        "/t/acme/runs/wr_1/refresh/extra/",
    ],
)
def test_a_malformed_run_id_is_not_found(world, client_as, path):
    assert client_as(world.viewer).get(path).status_code == 404
