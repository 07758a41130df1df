"""Helpers for the simulator's tests: Skyvern's schemas and a small HTTP helper.

The schemas come from Skyvern 1.0.56's own openapi.json: the shared copy
(`../shared/skyvern/openapi.json` beside the repository) when it is there,
else the vendored closure of the schemas we use
(`skyvern_openapi_schemas.json`, checked against the shared copy by
`test_vendored_schemas_match_shared`).
"""

import functools
import json
from pathlib import Path

import pytest
import requests
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
SHARED_OPENAPI = REPO.parent / "shared" / "skyvern" / "openapi.json"
VENDORED = Path(__file__).with_name("skyvern_openapi_schemas.json")
ROOT_SCHEMAS = (
    "WorkflowRun",
    "WorkflowRunResponse",
    "HTTPValidationError",
    "RunWebhookReplayResponse",
    "WorkflowRunStatus",
    "RunStatus",
    "TaskRunListItem",
    "Workflow",
    "BulkCancelRunsRequest",
    "BulkCancelRunsResponse",
    "RetryRunWebhookRequest",
    "WorkflowRunRequest-Input",
    "BrowserSessionResponse",
)

KEY = "sk-test-acme-0123456789"
OTHER_KEY = "sk-test-globex-9876543210"


def schema_closure(schemas: dict, roots=ROOT_SCHEMAS) -> dict:
    """The named schemas and every schema they reference, transitively."""

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    yield value.rsplit("/", 1)[-1]
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(refs(schemas[name]))
    return {name: schemas[name] for name in sorted(seen)}


@functools.cache
def components() -> dict:
    source = SHARED_OPENAPI if SHARED_OPENAPI.exists() else VENDORED
    return json.loads(source.read_text(encoding="utf-8"))["components"]


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator for `#/components/schemas/<name>`.

    The components are embedded in the root so `$ref`s resolve. No format
    checker: Skyvern's naive timestamps are not RFC 3339 `date-time`s (they
    lack an offset), which is exactly the observed behaviour to reproduce.
    """
    schema = {"$ref": f"#/components/schemas/{name}", "components": components()}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(name: str, instance) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, f"not a valid {name}:\n" + "\n".join(
        f"  at {list(e.absolute_path)}: {e.message[:200]}" for e in errors[:10]
    )


def call(server, method: str, path: str, *, key: str | None = KEY, headers=None, **kwargs):
    """One request to the simulator; never follows redirects."""
    all_headers = {"x-api-key": key} if key is not None else {}
    all_headers.update(headers or {})
    kwargs.setdefault("timeout", 5)
    return requests.request(
        method, server.url + path, headers=all_headers, allow_redirects=False, **kwargs
    )


@pytest.fixture
def org(simulator):
    """The simulator with organisation KEY (no runs) and OTHER_KEY (no runs)."""
    simulator.state.add_org(KEY, name="Acme Logistics")
    simulator.state.add_org(OTHER_KEY, name="Globex Freight")
    return simulator


@pytest.fixture
def seeded(simulator):
    """Organisation KEY with 60 seeded runs (every status), OTHER_KEY with 12."""
    simulator.state.add_org(KEY, name="Acme Logistics", seed="acme", seed_runs=60)
    simulator.state.add_org(OTHER_KEY, name="Globex Freight", seed="globex", seed_runs=12)
    return simulator


def all_runs(server, key: str = KEY) -> list[dict]:
    response = call(server, "GET", "/v1/agents/runs", key=key, params={"page_size": 1000})
    assert response.status_code == 200
    return response.json()
