"""A Skyvern simulator: a separate HTTP server that behaves like Skyvern 1.0.56.

Plain stdlib, no Django. It serves the endpoints the console uses, with bodies
that validate against Skyvern's own openapi.json, reproduces the observed
behaviour of a real server by default and lets tests and benchmarks inject
every failure. Anything kinder than Skyvern is a knob, off by default.

Behaviour, as Skyvern 1.0.56 (see /work/shared/skyvern/README.md):
- Errors are JSON `{"detail": ...}`: a missing or wrong `x-api-key` 403
  "Could not validate credentials"; another organisation's run 404 exactly
  like an unknown one; `GET /v1/runs/{id}` of an unknown id 404 "Task run not
  found"; retrying a non-terminal run 400; a wrong method 405; a trailing
  slash 307 to the URL without it; a bad list query (bad status, page=0...)
  422 `HTTPValidationError`. Cancel of a finished run: 200 `null`, no change.
- Timestamps everywhere (nested ones too) are ISO 8601 without an offset,
  meaning UTC.
- A retry answers the new run: `status` created, `recording_url`,
  `queued_at`, `started_at` null, `app_url` on the app host (`app_host=` /
  `--app-host`; default this server, which serves the page), and
  `retried_from_workflow_run_id` null (see `link_retries`). A JSON body on
  it is ignored. Busy (the `busy` knob): 503 + Retry-After, no run created.
- `GET /v1/agents/runs` and `/v1/agents/{wpid}/runs`: bare arrays of
  WorkflowRun, newest first, no page cap. `GET /v1/runs`: TaskRunListItem
  rows (filters status, search_key >= 3 chars, run_type,
  workflow_permanent_id, tags, failure_category), page and page_size at most
  100 each, so only the newest 10,000 runs of any filter can be reached.
- Skyvern's own retries: a run may carry `attempt` > 1 and `attempts[]` (the
  earlier, failed attempts with their retry decision, then the current one),
  and `retry_pending` with `next_attempt_at` while Skyvern waits to retry it
  itself (status failed meanwhile; a manual retry still makes a second run).
  When `next_attempt_at` comes, the SAME run id turns queued, running, then
  completed or failed as attempt + 1. These runs send no webhooks.
- `failure_category` (list rows): Skyvern's classifier, a list of
  {category, confidence_float, reasoning} from its 17 categories
  (`seed.CATEGORIES`), most confident first, on failed / terminated /
  timed_out runs; null otherwise.
- `webhook_failure_reason`: a run `failed` only because its webhook could not
  be delivered; it keeps its output and files, has no errors or category.
- Cancel: `POST /v1/runs/{id}/cancel` (above) and `POST /v1/runs/cancel`
  `{"run_ids": [...]}` (at most 100, else 422 `too_long`): answers
  `{"cancelled": [...], "failed": [...]}`; a run still going is cancelled,
  a finished, unknown or another organisation's one is "failed".
- Webhook replay, `POST /v1/runs/{id}/retry_webhook`, optional body
  `{"webhook_url": ...}`: sends the stored webhook (signed as a delivery)
  to that URL or the run's own, once, and answers the receiver's status,
  latency and up to 2 KB of its answer; no URL anywhere 400 "No webhook URL
  configured for the run." (Skyvern's MissingWebhookTarget), a non-http(s)
  URL 400.
- Workflows: each organisation's workflows keep their versions (made from
  the runs added or seeded: one version per workflow). `GET
  /v1/agents/{wpid}` answers the current `Workflow` (`?version=N` an older
  one), `GET /v1/agents/{wpid}/versions` all of them; unknown or another
  organisation's: 404 "Workflow not found. workflow_permanent_id=…" (",
  version=N"). `state.publish_workflow_version(key, wpid, title=,
  add_parameters={key: default or None}, remove_parameters=[...])` (or
  `POST /_sim/workflows/{wpid}/versions`) edits a workflow: a new version
  becomes current. Runs keep the version they ran (`workflow_id`, and
  `workflow_version` in list rows); a retry re-runs that version;
  `add_run(..., workflow_version=N)` adds a run of an older one.
- `POST /v1/run/agents` (`agent_id`, alias `workflow_id`; `parameters`,
  `title`, `webhook_url`, `browser_session_id`; header
  `x-max-steps-override`): a new run of the CURRENT version, lifecycle as
  a retry's; an input without a default and without a value 400 "Missing
  value for parameter …" and no run; busy 503 + Retry-After like a retry.
  A retry copies the run's `browser_session_id` (`add_run(...,
  browser_session_id=)`).
- Retry policies: a version's `workflow_definition.retry_policy`
  (`WorkflowRetryPolicy`): seeded workflows retry a failed run twice more
  (3 attempts); workflows of runs added by `add_run` have none until
  `state.set_retry_policy(key, wpid, {"max_retries": N}, version=None)` (or
  `POST /_sim/workflows/{wpid}/retry_policy`); a new version keeps it.
- Browser sessions, `GET /v1/browser_sessions/{pbs_id}`
  (`BrowserSessionResponse`): a session is known from the runs that used it
  (`browser_session_id`); "running" from the first one's creation for 60
  minutes, then "timeout"; `state.close_browser_session(id)` (or `POST
  /_sim/browser_sessions/{id}/close`) makes it "completed" now. Unknown or
  another organisation's: 404 "Browser session not found".
- The demo seed has a few of each (Skyvern retries, pending retries,
  webhook-only failures); `add_run(...)` / `POST /_sim/runs` take `attempt`,
  `attempts`, `retry_pending`, `next_attempt_at`, `failure_category`,
  `webhook_failure_reason`.

    from console.simulator import SimulatorServer
    server = SimulatorServer(host="127.0.0.1", port=0)   # 0 = a free port
    server.start(); server.url                          # "http://127.0.0.1:PORT"
    server.state.add_org("key-1", name="Acme", seed="acme", seed_runs=120)
    server.state.configure(error_rates={503: 0.5}, latency_ms=50)
    server.stop()

or `python -m console.simulator --port 8765 [--state-file var/simulator.json]`.

Modules: `state` (orgs, runs, knobs, lifecycle, persistence), `seed` (demo
data), `render` (JSON bodies, the app page), `media` (GIF/PNG/PDF made in
code), `server` (HTTP: API, app, media, control API), `webhooks` (sending
signed run-finished webhooks).

Webhooks, like Skyvern: when a run reaches a terminal status in the simulator
(a retry finishing, set_status, cancel) and has a webhook URL (its own
`webhook_url`, from add_run or inherited by a retry, else the organisation's,
`add_org(key, webhook_url=...)`), a background ticker POSTs its status
response merged with its WorkflowRunResponse (compact JSON, UTF-8) with
`x-skyvern-signature` (hex HMAC-SHA256 of that body as sent, keyed with the
organisation's API key), `x-skyvern-timestamp` (NOT signed, and off by the
Skyvern host's UTC offset: `webhook_timestamp_skew_seconds`, 5 h ahead by
default) and `Content-Type: application/json`. 3 s timeout per attempt; on
403, 408, 425, 429, 5xx or a network error it re-delivers the same body and
headers up to 3 times, after 1, 2, 4 s (or the receiver's Retry-After when
at most 30 s); other answers are final. Reserved example domains (the seeded
runs' hooks.example.com) are never contacted. `POST
/v1/runs/{id}/retry_webhook` sends it again at once, once.
`state.deliveries()` (or GET /_sim/deliveries) lists every attempt: run_id,
url, status_code, attempt (1, 2...), timestamp sent, error.

Knobs (`state.configure(**knobs)` or `POST /_sim/config`; unknown -> error):
  latency_ms               added before every faulted /v1 answer
  error_rates              {status: probability}, e.g. {500: 1.0}, {503: 0.5};
                           5xx carry no Retry-After; 4xx act before the request
  rate_limit_per_second    per organisation; above it 429 + Retry-After
  rate_limit_retry_after   seconds in that Retry-After (default 1)
  busy                     bool or probability: retry and run_workflow answer
                           503 + Retry-After,
                           body says no run was created (none is)
  busy_retry_after         seconds in that Retry-After (default 2)
  hang_seconds             sleep this long before answering (client timeouts)
  malformed_json           bool/probability: 200 with a truncated JSON body
  drop_connection          bool/probability: close the socket, send nothing
  truncate_body            bool/probability: announce the body, send half, close
  redirect_to              URL: answer 307 to redirect_to + path (never follow!)
  fault_endpoints          None (all) or some of list (the three list
                           endpoints, /v1/runs included), get_run, retry,
                           cancel (one and bulk), retry_webhook, workflows
                           (a workflow, its versions), run_workflow
  apply_then_fail          True (default): hang/drop/5xx come after the request
                           took effect (a retry did create its run); False: before
  fault_seed               seed the dice, for reproducible benchmarks
  queued_after, running_after, finished_after   seconds after creation (new runs)
  failure_rate             probability that a new run ends failed
  recording_url_ttl        seconds a signed recording_url stays valid
  link_retries             KINDER than Skyvern, off by default: fill
                           retried_from_workflow_run_id of a run made by the
                           retry endpoint (real Skyvern leaves it null)
  webhook_timestamp_skew_seconds  how far x-skyvern-timestamp is ahead of true
                           time (default 18000: Skyvern's utcnow().timestamp()
                           on an America/New_York host); 0 = a UTC host
  webhook_backoff_scale    multiplies the waits between re-deliveries
                           (default 1; tests shorten them with e.g. 0.01)

Control API (loopback only, never faulted, no key): GET /_sim/health,
GET|POST /_sim/config, GET /_sim/retries, POST /_sim/reset,
GET /_sim/deliveries,
POST /_sim/orgs {"api_key","name","seed","seed_runs","webhook_url"},
POST /_sim/runs {"api_key", add_run's keywords...},
POST /_sim/runs/{run_id}/status {"status","failure_reason"},
POST /_sim/workflows/{wpid}/versions {"api_key","title","add_parameters",
"remove_parameters"} (a new current version; 404 for an unknown workflow).
"""

from .server import SimulatorServer
from .state import KNOBS, SimulatorState

__all__ = ["KNOBS", "SimulatorServer", "SimulatorState"]
