"""Claude Code hooks: SessionStart / SessionEnd payloads (JSON on stdin) as sessions.

Claude's own session id becomes the session's external id, so a repeated SessionStart
of a running Claude session changes nothing, a SessionEnd finds its start, and a
SessionStart that resumes an ended Claude session starts a new session linked to it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from session_buddy.client.delivery import Courier
from session_buddy.client.events import end_event, start_event
from session_buddy.client.outcomes import Outcome
from session_buddy.processes import launcher_pid

COMPONENT = "claude-code"
SHELL_TYPE = "ClaudeCode"
MAX_PAYLOAD_BYTES = 1024 * 1024


class HookPayloadError(ValueError):
    """The hook input is not a Claude Code SessionStart/SessionEnd payload."""


def parse_payload(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise HookPayloadError(f"payload is {len(raw)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        payload = json.loads(raw or b"null")
    except ValueError as exc:
        raise HookPayloadError(f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise HookPayloadError("payload must be a JSON object")
    event = payload.get("hook_event_name")
    if event not in ("SessionStart", "SessionEnd"):
        raise HookPayloadError(
            f"hook_event_name {event!r} is not handled (use SessionStart or SessionEnd)"
        )
    session_id = payload.get("session_id")
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 200:
        raise HookPayloadError("session_id must be a non-empty string of at most 200 characters")
    return payload


def _clipped(payload: dict[str, Any], key: str) -> str | None:
    """A string field of the payload cut to 500 characters (hook input is never refused)."""
    value = payload.get(key)
    return value[:500] if isinstance(value, str) and value else None


def record(payload: dict[str, Any], courier: Courier) -> str:
    """Record one hook payload; a line saying what happened."""
    claude_id = payload["session_id"]
    if payload["hook_event_name"] == "SessionStart":
        details = {
            "external_id": claude_id,
            "source": _clipped(payload, "source") or "startup",
            "transcript_path": _clipped(payload, "transcript_path"),
        }
        event = start_event(
            COMPONENT,
            SHELL_TYPE,
            # Claude Code itself, past the `sh -c` it runs hooks with.
            pid=launcher_pid() or os.getppid(),
            cwd=_clipped(payload, "cwd"),
            metadata={k: v for k, v in details.items() if v is not None},
        )
        started = courier.start(event)
        if started.session_id:
            return f"tracked {started.session_id}"
        return (
            "spooled the start for later"
            if started.spooled
            else f"start not recorded: {started.reason}"
        )
    reason = _clipped(payload, "reason") or "other"
    event = end_event(None, exit_code=None, exit_reason=reason)
    ended = courier.end_external(claude_id, event)
    if ended.outcome is Outcome.DELIVERED:
        state = ended.result.get("session_status")
        return f"ended Claude session {claude_id}: {ended.result.get('session_id')} is {state}"
    if ended.result.get("status") == "not_found":
        return f"no session for Claude session {claude_id}"
    return "spooled the end for later" if ended.spooled else f"end not recorded: {ended.reason}"
