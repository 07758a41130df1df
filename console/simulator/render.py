"""Turning runs into what Skyvern sends: JSON bodies and the app's run page.

Guarantees:
- `workflow_run()` validates against openapi.json's `WorkflowRun` and
  `workflow_run_response()` against `WorkflowRunResponse`; both also carry a
  few fields newer than that document (`run_tags`, `workflow_version`, and
  on the response `workflow_permanent_id`), as real Skyvern does.
- Timestamps are ISO 8601 without an offset, always with microseconds
  (`2026-11-28T08:44:13.373593`), meaning UTC.
- `recording_url` is null until the run has started (and when archived);
  otherwise a signed link that expires after `recording_url_ttl` seconds.
- `app_page()` escapes every value taken from a run (html.escape).
"""

import hashlib
import hmac
import html
import json
import math
import time
from dataclasses import dataclass
from urllib.parse import quote

from . import media
from . import seed as seedmod
from .state import FAILURE_STATUSES, BrowserSession, Org, Run, WorkflowVersion, retry_reason

ts = seedmod.ts


def dumps(data) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Links:
    """Where things live: the API host (media too) and the app host."""

    base_url: str
    app_host: str
    secret: str
    ttl: int = 3600

    def app_url(self, run_id: str) -> str:
        return f"{self.app_host}/runs/{quote(run_id, safe='')}"

    def signature(self, run_id: str, expires: int) -> str:
        message = f"{run_id}:{expires}".encode()
        return hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()[:32]

    def recording_url(self, run_id: str) -> str:
        # Rounded up to the minute so the URL is stable for a little while.
        expires = math.ceil((time.time() + self.ttl) / 60) * 60
        signature = self.signature(run_id, expires)
        return (
            f"{self.base_url}/recordings/{quote(run_id, safe='')}.gif"
            f"?expires={expires}&signature={signature}"
        )

    def check_recording(self, run_id: str, expires: str, signature: str) -> str | None:
        """None when the link is good, else why not."""
        if not expires.isdigit():
            return "Missing or malformed expiry"
        if not hmac.compare_digest(self.signature(run_id, int(expires)), signature):
            return "SignatureDoesNotMatch"
        if int(expires) < time.time():
            return "Request has expired"
        return None

    def screenshot_url(self, run_id: str, n: int) -> str:
        return f"{self.base_url}/artifacts/{quote(run_id, safe='')}/screenshot_{n}.png"

    def file_url(self, run_id: str, filename: str) -> str:
        return f"{self.base_url}/artifacts/{quote(run_id, safe='')}/files/{quote(filename)}"


def _attempts(run: Run) -> list[dict]:
    """Every attempt of the run, oldest first: the earlier ones as recorded,
    then the current one with Skyvern's retry decision, if any."""
    return [dict(a) for a in run.attempts] + [_attempt(run)]


def _attempt(run: Run) -> dict:
    decision = reason = None
    if run.retry_pending:
        decision, reason = "retry", retry_reason(run)
    elif run.attempt > 1 and run.status in FAILURE_STATUSES:
        decision, reason = "stop", f"Retry policy: no attempts left after attempt {run.attempt}."
    return {
        "attempt_number": run.attempt,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "error_codes": [e["error_code"] for e in run.errors if e.get("error_code")],
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "retry_decision": decision,
        "decision_reason": reason,
        "next_attempt_at": ts(run.next_attempt_at),
        "webhook_sent_at": ts(run.finished_at) if run.webhook_url and run.finished_at else None,
    }


def _credits(run: Run) -> int:
    return (run.step_count or 0) * 2


def workflow_run(run: Run, org: Org, versions: dict[str, int] | None = None) -> dict:
    """One row of `GET /v1/agents/runs` (`WorkflowRun`); `versions` maps the
    organisation's workflow version ids to their numbers."""
    return {
        "workflow_run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "workflow_permanent_id": run.workflow_permanent_id,
        "organization_id": org.organization_id,
        "browser_session_id": run.browser_session_id,
        "browser_profile_id": None,
        "browser_seed_source": "fresh",
        "browser_sink_profile_id": None,
        "start_fresh_browser": False,
        "reuse_browser_session": None,
        "debug_session_id": None,
        "status": run.status,
        "attempt": run.attempt,
        "retry_pending": run.retry_pending,
        "next_attempt_at": ts(run.next_attempt_at),
        "attempts": _attempts(run),
        "extra_http_headers": None,
        "cdp_connect_headers": None,
        "proxy_location": "RESIDENTIAL",
        "webhook_callback_url": run.webhook_url,
        "webhook_failure_reason": run.webhook_failure_reason,
        "totp_verification_url": None,
        "totp_identifier": None,
        "failure_reason": run.failure_reason,
        "failure_category": [dict(c) for c in run.failure_category or ()] or None,
        "retried_from_workflow_run_id": run.retried_from,
        "fallback_attempt": None,
        "parent_workflow_run_id": None,
        "workflow_title": run.workflow_title,
        "max_screenshot_scrolls": None,
        "max_elapsed_time_minutes": None,
        "browser_address": None,
        "run_with": "agent",
        "browser_type": None,
        "browser_settings": None,
        "browser_settings_receipt": None,
        "script_run": None,
        "job_id": None,
        "depends_on_workflow_run_id": None,
        "sequential_key": None,
        "sequential_credential_id": None,
        "ai_fallback": None,
        "code_gen": None,
        "trigger_type": run.trigger_type,
        "workflow_schedule_id": None,
        "ignore_inherited_workflow_system_prompt": False,
        "copilot_session_id": None,
        "created_by": None,
        "credits_used": _credits(run),
        "cached_credits_used": 0,
        "queued_at": ts(run.queued_at),
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "created_at": ts(run.created_at),
        "modified_at": ts(run.modified_at),
        # Newer than openapi.json (clients must ignore what they don't know):
        "run_tags": [],
        "workflow_version": (versions or {}).get(run.workflow_id, 1),
    }


def task_run_list_item(run: Run) -> dict:
    """One row of `GET /v1/runs` (`TaskRunListItem`): a lightweight summary,
    without failure reason, modified_at, app_url or recording."""
    digest = hashlib.sha256(f"task_run|{run.run_id}".encode()).hexdigest()
    return {
        "task_run_id": f"tr_{int(digest[:15], 16)}",
        "run_id": run.run_id,
        "task_run_type": "workflow_run",
        "status": run.status,
        "title": run.workflow_title,
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "created_at": ts(run.created_at),
        "workflow_permanent_id": run.workflow_permanent_id,
        "workflow_deleted": False,
        "script_run": False,
        "trigger_type": run.trigger_type,
        "created_by": None,
    }


def run_request(run: Run) -> dict:
    return {
        "workflow_id": run.workflow_permanent_id,
        "parameters": run.parameters,
        "title": run.workflow_title,
        "proxy_location": "RESIDENTIAL",
        "webhook_url": run.webhook_url,
        "totp_url": None,
        "totp_identifier": None,
        "browser_session_id": run.browser_session_id,
        "reuse_browser_session": None,
        "browser_profile_id": None,
        "start_fresh_browser": False,
        "max_screenshot_scrolls": None,
        "max_elapsed_time_minutes": None,
        "extra_http_headers": None,
        "cdp_connect_headers": None,
        "browser_address": None,
        "ai_fallback": None,
        "run_with": None,
        "browser_type": None,
        "run_metadata": None,
        "file_ids": None,
    }


def downloaded_files(run: Run, links: Links) -> list[dict]:
    files = []
    for name in run.files:
        content = media.file_bytes(name, run.run_id)
        files.append(
            {
                "url": links.file_url(run.run_id, name),
                "checksum": hashlib.sha256(content).hexdigest(),
                "filename": name,
                "file_size": len(content),
                "modified_at": ts(run.finished_at),
                "artifact_id": "a_"
                + hashlib.sha256(f"{run.run_id}|{name}".encode()).hexdigest()[:18],
            }
        )
    return files


def screenshot_urls(run: Run, links: Links) -> list[str]:
    if run.started_at is None:
        return []
    count = max(1, min(3, run.step_count or 1))
    return [links.screenshot_url(run.run_id, n) for n in reversed(range(count))]


def workflow_run_response(run: Run, links: Links) -> dict:
    """`GET /v1/runs/{id}` and the retry's answer (`WorkflowRunResponse`)."""
    return {
        "run_id": run.run_id,
        "status": run.status,
        "output": run.output,
        "downloaded_files": downloaded_files(run, links),
        "recording_url": links.recording_url(run.run_id) if run.recording_available else None,
        "recording_archived": run.recording_archived,
        "screenshot_urls": screenshot_urls(run, links),
        "failure_reason": run.failure_reason,
        "created_at": ts(run.created_at),
        "modified_at": ts(run.modified_at),
        "queued_at": ts(run.queued_at),
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "app_url": links.app_url(run.run_id),
        "browser_session_id": run.browser_session_id,
        "browser_profile_id": None,
        "max_screenshot_scrolls": None,
        "script_run": None,
        "errors": run.errors,
        "step_count": run.step_count,
        "run_type": "workflow_run",
        "attempt": run.attempt,
        "retry_pending": run.retry_pending,
        "next_attempt_at": ts(run.next_attempt_at),
        "attempts": _attempts(run),
        "run_with": "agent",
        "ai_fallback": None,
        "script_id": None,
        "browser_seed_source": "fresh",
        "browser_settings_receipt": None,
        "run_request": run_request(run),
        # Newer than openapi.json:
        "workflow_permanent_id": run.workflow_permanent_id,
        "run_tags": [],
    }


def workflow_run_status(run: Run, links: Links) -> dict:
    """Skyvern's older workflow run status response (what
    `build_workflow_run_status_response` makes): the first half of a webhook."""
    files = downloaded_files(run, links)
    return {
        "workflow_id": run.workflow_id,
        "workflow_run_id": run.run_id,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "proxy_location": "RESIDENTIAL",
        "webhook_callback_url": run.webhook_url,
        "webhook_failure_reason": run.webhook_failure_reason,
        "totp_verification_url": None,
        "totp_identifier": None,
        "extra_http_headers": None,
        "queued_at": ts(run.queued_at),
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "created_at": ts(run.created_at),
        "modified_at": ts(run.modified_at),
        "parameters": run.parameters,
        "screenshot_urls": screenshot_urls(run, links),
        "recording_url": links.recording_url(run.run_id) if run.recording_available else None,
        "downloaded_files": files,
        "downloaded_file_urls": [item["url"] for item in files],
        "outputs": run.output,
        "total_steps": run.step_count,
        "total_cost": None,
        "task_v2": None,
        "workflow_title": run.workflow_title,
        "browser_session_id": run.browser_session_id,
        "max_screenshot_scrolls": None,
        "errors": run.errors,
        "run_with": "agent",
        "ai_fallback": None,
    }


def webhook_payload(run: Run, links: Links) -> bytes:
    """The body of a run's webhook, as sent (raw bytes): like Skyvern, its
    status response updated with its run response (`WorkflowRunResponse`), so
    both `workflow_run_id` and `run_id`, `outputs` and `output`..., dumped
    compact with `ensure_ascii=False`."""
    return dumps({**workflow_run_status(run, links), **workflow_run_response(run, links)})


def webhook_replay(run: Run, target_url: str | None, payload: bytes, headers: dict, result) -> dict:
    """`POST /v1/runs/{id}/retry_webhook` (`RunWebhookReplayResponse`).

    `result` is the `webhooks.DeliveryResult` of the re-send (None when
    there was nowhere to send it).
    """
    return {
        "run_id": run.run_id,
        "run_type": "workflow_run",
        "default_webhook_url": run.webhook_url,
        "target_webhook_url": target_url,
        "payload": payload.decode(),
        "headers": dict(headers),
        "status_code": result.status_code if result else None,
        "latency_ms": result.latency_ms if result else None,
        "response_body": result.response_body if result else None,
        "error": (result.error if result else "No webhook URL is configured for this run."),
    }


def workflow(version: WorkflowVersion, workflow_permanent_id: str, org: Org) -> dict:
    """One version of a workflow (`Workflow`), as `GET /v1/agents/{id}` and
    `/versions` answer it: its inputs as `workflow` parameters, no blocks."""
    created = ts(version.created_at)
    return {
        "workflow_id": version.workflow_id,
        "organization_id": org.organization_id,
        "title": version.title,
        "workflow_permanent_id": workflow_permanent_id,
        "agent_id": workflow_permanent_id,
        "version": version.version,
        "is_saved_task": False,
        "is_template": False,
        "description": None,
        "workflow_definition": {
            "version": 1,
            "parameters": [
                {
                    "parameter_type": "workflow",
                    "key": key,
                    "description": None,
                    "workflow_parameter_id": "wp_"
                    + hashlib.sha256(f"{version.workflow_id}|{key}".encode()).hexdigest()[:18],
                    "workflow_parameter_type": "string",
                    "workflow_id": version.workflow_id,
                    "default_value": default,
                    "created_at": created,
                    "modified_at": created,
                    "deleted_at": None,
                }
                for key, default in version.parameters.items()
            ],
            "blocks": [],
            "retry_policy": version.retry_policy,
        },
        "proxy_location": "RESIDENTIAL",
        "webhook_callback_url": version.webhook_callback_url,
        "totp_verification_url": None,
        "totp_identifier": None,
        "persist_browser_session": False,
        "reuse_browser_session": False,
        "status": "published",
        "run_with": "agent",
        "ai_fallback": True,
        "created_at": created,
        "modified_at": created,
        "deleted_at": None,
    }


def browser_session(session: BrowserSession, org: Org, links: Links) -> dict:
    """A browser session (`BrowserSessionResponse`), as `GET
    /v1/browser_sessions/{id}` answers it."""
    ts = seedmod.ts
    closed = session.status != "running"
    return {
        "browser_session_id": session.browser_session_id,
        "organization_id": org.organization_id,
        "status": session.status,
        "runnable_type": "workflow_run",
        "runnable_id": session.runnable_id,
        "timeout": session.timeout_minutes,
        "browser_address": None,
        "app_url": f"{links.app_host}/browser-session/{quote(session.browser_session_id, safe='')}",
        "extensions": None,
        "browser_type": None,
        "browser_profile_id": None,
        "generate_browser_profile": False,
        "browser_settings": None,
        "browser_settings_receipt": None,
        "vnc_streaming_supported": False,
        "stream_transport": None if closed else "cdp",
        "download_path": None,
        "downloaded_files": None,
        "recordings": None,
        "started_at": ts(session.created_at),
        "completed_at": ts(session.completed_at),
        "created_by": None,
        "created_at": ts(session.created_at),
        "modified_at": ts(session.completed_at or session.created_at),
        "deleted_at": None,
        "warning": None,
        "source": "managed",
        "remaining_lifetime_seconds": None,
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} · {run_id} · Skyvern (simulated)</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2433;max-width:60rem}}
dt{{font-weight:600;margin-top:.6rem}} dd{{margin:0}}
pre{{background:#f3f4f6;padding:.6rem;overflow:auto}}
.status{{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#e5e7eb}}
</style></head>
<body>
<p><small>Skyvern app (simulator)</small></p>
<h1>{title}</h1>
<p>Run <code>{run_id}</code> <span class="status">{status}</span></p>
<dl>
<dt>Workflow</dt><dd><code>{wpid}</code></dd>
<dt>Created</dt><dd>{created} UTC</dd>
<dt>Started</dt><dd>{started}</dd>
<dt>Finished</dt><dd>{finished}</dd>
<dt>Retried from</dt><dd>{retried_from}</dd>
<dt>Failure reason</dt><dd>{failure}</dd>
<dt>Parameters</dt><dd><pre>{parameters}</pre></dd>
<dt>Errors</dt><dd><pre>{errors}</pre></dd>
<dt>Output</dt><dd><pre>{output}</pre></dd>
</dl>
<h2>Recording</h2>
{recording}
</body></html>
"""


def app_page(run: Run, links: Links) -> str:
    """The run's page in the (simulated) Skyvern app; everything escaped."""

    def e(value) -> str:
        return html.escape("—" if value in (None, "") else str(value), quote=True)

    def pretty(value) -> str:
        return e(json.dumps(value, indent=2, ensure_ascii=False))

    if run.recording_available:
        recording = f'<img alt="Recording of the run" src="{e(links.recording_url(run.run_id))}">'
    elif run.recording_archived:
        recording = "<p>The recording has been archived.</p>"
    else:
        recording = "<p>No recording yet: the run has not started.</p>"
    return _PAGE.format(
        title=e(run.workflow_title),
        run_id=e(run.run_id),
        status=e(run.status),
        wpid=e(run.workflow_permanent_id),
        created=e(ts(run.created_at)),
        started=e(ts(run.started_at)),
        finished=e(ts(run.finished_at)),
        retried_from=e(run.retried_from),
        failure=e(run.failure_reason),
        parameters=pretty(run.parameters),
        errors=pretty(run.errors),
        output=pretty(run.output),
        recording=recording,
    )
