"""Hostile input, part 3: Skyvern webhook bodies and headers (Hypothesis).

Random bytes, random JSON, valid-looking runs with junk fields, junk
signatures and timestamps, correctly signed junk: the answer is 404/401/400/
413, or 200 only for a correctly signed valid run, whatever its timestamp
says (Skyvern doesn't sign it, and its clock is off by hours); never a 500;
and no row changes unless the body was such a run (then only that run's row).
"""

import hashlib
import hmac
import json
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from console.runs.models import Run, Status
from console.simulator import render
from console.sync.services import sync_state_for
from tests.conftest import KEY_A, KEY_B
from tests.hostile.common import examples, nasty_text, rolled_back, rows, snapshot

LIMIT = 4096  # WEBHOOK_MAX_BODY_BYTES here, so that "too big" is cheap to try


def sign(body: bytes, key: str = KEY_A) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def fresh_headers(body: bytes, key: str = KEY_A) -> dict:
    return {"x-skyvern-signature": sign(body, key), "x-skyvern-timestamp": str(int(time.time()))}


@pytest.fixture
def hook(world, settings):
    """Team A's webhook URL and a cached run of A that has since finished."""
    settings.WEBHOOK_MAX_BODY_BYTES = LIMIT
    world.run_id = world.add_run(status="running")
    world.simulator.state.set_status(world.run_id, "failed", "Portal asked for a new password")
    world.foreign = world.add_run(world.connection_b, status="failed")
    world.url = f"/webhooks/skyvern/{sync_state_for(world.connection_a).webhook_token}/"
    sync_state_for(world.connection_b)
    run = world.simulator.state.get_run(KEY_A, world.run_id)
    world.payload = json.loads(render.webhook_payload(run, world.simulator.links()))
    return world


def deliver(client, url, body: bytes, headers: dict, content_type="application/json"):
    return client.post(url, data=body, content_type=content_type, headers=headers)


def assert_refused(world, before, response, allowed=(400, 401, 404, 413)):
    assert response.status_code in allowed, response.status_code
    assert response.json() == {"ok": False}
    assert snapshot(world) == before


def assert_only_that_run_changed(world, before, run_id: str):
    """A stored delivery: only connection A's row of this run differs."""
    after = rows()
    for table, values in after.items():
        if table != "Run":
            assert values == before[0][table], table
    a = world.connection_a.pk
    untouched = [
        r for r in before[0]["Run"] if not (r["run_id"] == run_id and r["connection_id"] == a)
    ]
    now = [r for r in after["Run"] if not (r["run_id"] == run_id and r["connection_id"] == a)]
    assert now == untouched
    stored = Run.objects.get(connection=world.connection_a, run_id=run_id)
    assert stored.team_id == world.team_a.pk
    assert "\x00" not in stored.search_text
    assert world.simulator.state.retry_counts() == before[1]


# --- random bytes and random headers ---------------------------------------------------------

signatures = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=70),
    st.sampled_from(["", " ", "sha256=", "z" * 64, "0" * 64, "0" * 63, "0" * 65, "\x00" * 64]),
)
timestamps = st.one_of(
    st.text(max_size=20),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", "now", "1e9", "1.5", "-1", "0", "١٢٣", "9" * 13, "+1", " 1 "]),
)


@examples(50)
@given(
    body=st.binary(max_size=LIMIT + 200),
    signature=signatures,
    timestamp=timestamps,
    content_type=st.sampled_from(["application/json", "application/octet-stream", "text/plain"]),
    user_agent=st.one_of(st.none(), nasty_text),
)
@example(
    body=b"{}",
    signature="0" * 64,
    timestamp="1",
    content_type="application/json",
    user_agent="\x00",
)
def test_unsigned_junk_is_refused_and_changes_nothing(
    hook, client, body, signature, timestamp, content_type, user_agent
):
    headers = {"x-skyvern-signature": signature, "x-skyvern-timestamp": timestamp}
    if user_agent is not None:  # rejections are audited with the user agent
        headers["user-agent"] = user_agent
    before = snapshot(hook)
    with rolled_back():
        response = deliver(client, hook.url, body, headers, content_type)
    expected = (413,) if len(body) > LIMIT else (401,)
    assert_refused(hook, before, response, expected)


@examples(50)
@given(body=st.binary(max_size=LIMIT + 200))
@example(body=b"")
@example(body=b"\xff\xfe")
@example(body=b'{"run_id": "wr_1", "status": "failed", "x": 1e400}')
@example(body=b'{"run_id": "wr_1", "status": "failed", "x": NaN}')
@example(body=b"[" * 5000)
def test_correctly_signed_random_bytes_are_refused(hook, client, body):
    before = snapshot(hook)
    with rolled_back():
        response = deliver(client, hook.url, body, fresh_headers(body))
    assert_refused(hook, before, response, (413,) if len(body) > LIMIT else (400,))


@examples(20)
@given(token=st.text(max_size=80), body=st.binary(max_size=50))
@example(token="x" * 65, body=b"{}")
@example(token="\x00", body=b"")  # PostgreSQL refused to compare it: a 500
def test_an_unknown_token_is_not_found(hook, client, token, body):
    from urllib.parse import quote

    before = snapshot(hook)
    url = f"/webhooks/skyvern/{quote(token, safe='')}/"
    with rolled_back():
        response = deliver(client, url, body, fresh_headers(body))
    if url == hook.url:
        return
    assert response.status_code == 404
    assert snapshot(hook) == before


# --- random JSON, and valid-looking runs with junk fields --------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@examples(40)
@given(value=json_values)
@example(value={"run_id": "wr_1", "status": "failed", "screenshot_urls": 5})
@example(value={"run_id": "wr_1", "status": "failed", "errors": 5, "downloaded_files": 7})
def test_correctly_signed_random_json_is_refused_unless_it_is_a_run(hook, client, value):
    body = dumps(value)
    before = snapshot(hook)
    with rolled_back():
        response = deliver(client, hook.url, body, fresh_headers(body))
        if response.status_code == 200:
            assert_only_that_run_changed(hook, before, value["run_id"])
            return
    assert_refused(hook, before, response, (400, 413))


JUNK_FIELDS = {
    "run_id": st.one_of(
        st.just("wr_hostile1"),
        st.text(alphabet="abcXYZ019_-", min_size=1, max_size=110).map(lambda s: "wr_" + s),
        nasty_text,
        json_values,
    ),
    "status": st.one_of(st.sampled_from(Status.values), nasty_text, json_values),
    "failure_reason": st.one_of(nasty_text, json_values),
    "created_at": st.one_of(
        st.sampled_from(
            [
                "0001-01-01T00:00:00+05:00",
                "9999-12-31T23:59:59-05:00",
                "9999-12-31T23:59:59Z",
                "0001-01-01T00:00:00",
                "2024-02-30T00:00:00",
                "2024-01-01T00:00:00Z",
                "Z",
                "",
            ]
        ),
        st.datetimes().map(lambda d: d.isoformat()),
        nasty_text,
        json_values,
    ),
    "app_url": st.one_of(
        st.sampled_from(["javascript:alert(1)", "https://x/" + "a" * 3000, "https://ok.example/"]),
        nasty_text,
        json_values,
    ),
    "recording_url": st.one_of(nasty_text, json_values),
    "screenshot_urls": json_values,
    "downloaded_files": json_values,
    "errors": json_values,
    "step_count": json_values,
    "output": json_values,
    "run_request": st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "workflow_id": st.one_of(nasty_text, json_values),
                "title": st.one_of(nasty_text, json_values),
            },
        ),
    ),
}
for _name in ("modified_at", "queued_at", "started_at", "finished_at"):
    JUNK_FIELDS[_name] = JUNK_FIELDS["created_at"]
junk_overrides = st.fixed_dictionaries({}, optional=JUNK_FIELDS)

RUN_REGRESSIONS = [
    {"modified_at": "0001-01-01T00:00:00+05:00"},
    {"created_at": "9999-12-31T23:59:59-05:00"},
    {"screenshot_urls": 5},
    {"errors": 5},
    {"downloaded_files": 5},
    {"run_request": {"title": "a\x00b"}},
    {"failure_reason": "a\x00b"},
    {"output": {"k": "\x00"}},
    {"run_request": {"title": "x" * 5000}},
    {"run_id": "wr_" + "a" * 101},
    {"step_count": 2**80},
    {"output": 2**80},
]


def _run_regressions(test):
    for overrides in RUN_REGRESSIONS:
        test = example(overrides=overrides, drop=[])(test)
    return test


@examples(80)
@given(overrides=junk_overrides, drop=st.lists(st.sampled_from(sorted(JUNK_FIELDS)), max_size=3))
@_run_regressions
def test_signed_runs_with_junk_fields(hook, client, overrides, drop):
    value = {**hook.payload, **overrides}
    for name in drop:
        value.pop(name, None)
    body = dumps(value)
    if len(body) > LIMIT:
        body = dumps({k: v for k, v in value.items() if k not in ("output", "run_request")})
    before = snapshot(hook)
    with rolled_back():
        response = deliver(client, hook.url, body, fresh_headers(body))
        assert response.status_code < 500
        if response.status_code == 200:
            if snapshot(hook) == before:
                return  # the same payload again, or older than the cached run
            assert_only_that_run_changed(hook, before, value["run_id"])
            stored = Run.objects.get(connection=hook.connection_a, run_id=value["run_id"])
            assert stored.status == value["status"]
            return
    assert_refused(hook, before, response, (400, 413))


# --- signatures and timestamps on a valid body ---------------------------------------------------


@examples(50)
@given(
    mangle=st.sampled_from(
        ["right", "upper", "padded", "other key", "truncated", "prefixed", "junk", "missing"]
    ),
    junk_signature=signatures,
    timestamp=st.one_of(
        st.none(),
        timestamps,
        # Skyvern's own: off by its host's UTC offset, up to a day either way.
        st.integers(-86400, 86400).map(lambda skew: str(int(time.time()) + skew)),
    ),
)
@example(mangle="upper", junk_signature="", timestamp=" 1 ")
@example(mangle="right", junk_signature="", timestamp="١٢٣")
@example(mangle="right", junk_signature="", timestamp=str(int(time.time()) + 18000))
@example(mangle="right", junk_signature="", timestamp=None)
@example(mangle="other key", junk_signature="", timestamp=str(int(time.time())))
def test_signature_and_timestamp_junk(hook, client, mangle, junk_signature, timestamp):
    body = dumps(hook.payload)
    right = sign(body)
    signature = {
        "right": right,
        "upper": right.upper(),
        "padded": f"  {right}\t",
        "other key": sign(body, KEY_B),
        "truncated": right[:-2],
        "prefixed": "sha256=" + right,
        "junk": junk_signature,
        "missing": None,
    }[mangle]
    headers = {} if timestamp is None else {"x-skyvern-timestamp": timestamp}
    if signature is not None:
        headers["x-skyvern-signature"] = signature
    valid = mangle in ("right", "upper", "padded") or (mangle == "junk" and junk_signature == right)
    before = snapshot(hook)
    with rolled_back():
        response = deliver(client, hook.url, body, headers)
        if valid:
            assert response.status_code == 200, timestamp
            assert_only_that_run_changed(hook, before, hook.run_id)
        else:
            assert response.status_code == 401, (mangle, timestamp)
            assert snapshot(hook) == before
    assert snapshot(hook) == before
    assert snapshot(hook) == before
