"""What each Claude Code hook event means for its session, the same for the command hook
and for `POST /hooks/claude-code`.

Claude's own session id is the session's external id. SessionStart starts (or, for a
running Claude session, repeats or resumes) a session; SessionEnd ends the session of
that Claude id that started by then, active or abandoned; the activity events are
heartbeats that say what the session is doing (a tool event after a permission prompt
sets `working` again); SubagentStart/SubagentStop open and end child sessions, whose
external id is the agent id. Prompts and messages are never kept: only the fields named
here. Standard library only: the command hook imports it, and `record_in_store` is how it
writes to the local store without a server.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from session_buddy import wire
from session_buddy.core import transitions
from session_buddy.core.errors import plain_text
from session_buddy.core.records import SessionOrigin
from session_buddy.timestamps import format_micros, parse_timestamp, to_micros

TYPE_CHECKING = False  # see session_buddy.lazy: on the Claude Code hook's path
if TYPE_CHECKING:
    from typing import Any

    from session_buddy.core.store.base import Tx

COMPONENT = "claude-code"
SHELL_TYPE = "ClaudeCode"
SUBAGENT_SHELL_TYPE = "ClaudeCodeSubagent"
ID_MAX = 200
# Notification types that mean Claude Code waits for the person.
WAITING = {"permission_prompt", "idle_prompt", "elicitation_dialog", "agent_needs_input"}
ACTIVITY_OF = {
    "UserPromptSubmit": "working",
    "PreToolUse": "working",
    "PostToolUse": "working",  # after a permission prompt: the person answered
    "PostToolUseFailure": "working",
    "PermissionRequest": "waiting_for_input",  # at once; Notification says so 6 s later
    "Stop": "idle",
    "StopFailure": "failing",
    "PreCompact": "working",
    "PostCompact": "working",
}
HANDLED = (
    "SessionStart",
    "SessionEnd",
    *ACTIVITY_OF,
    "Notification",
    "SubagentStart",
    "SubagentStop",
)
START_KEPT = ("source", "transcript_path", "model", "permission_mode")
# Subagent starts are named by their agent id, so a repeated hook call is one event.
_SUBAGENT_EVENTS = "6f1d2c3b-5a4e-4f60-9b8a-7c6d5e4f3a2b"


class HookPayloadError(ValueError):
    """The hook input is not a Claude Code hook payload session-buddy handles."""


class Step(NamedTuple):
    """What one hook call does: `start` (with the start's metadata), `end` or `beat`."""

    kind: str
    external_id: str
    shell_type: str = SHELL_TYPE
    noun: str = "Claude session"  # what the external id names, for people
    metadata: dict[str, Any] | None = None
    event_id: str | None = None  # the hook's stamp's; fixed for subagent starts
    exit_reason: str | None = None
    activity: str | None = None
    detail: str | None = None
    cwd: str | None = None
    # The command hook's stamp (`wire.ORIGIN_KEY`): its time and event id, and for a
    # SessionStart the facts of Claude Code's process.
    origin: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        return f"{self.noun} {self.external_id}"

    def stamped(self, now: str) -> str:
        """The event's time: the hook's own when it stamped one, else `now`."""
        given = (self.origin or {}).get("timestamp")
        return given if isinstance(given, str) else now

    def end_event(self, timestamp: str) -> dict[str, Any]:
        """track_session_end's event for an `end` step (without the session it ends)."""
        event = {"timestamp": timestamp, "metadata": {"exit_reason": self.exit_reason}}
        return event | ({"event_id": self.event_id} if self.event_id else {})

    def start_arguments(self, facts: dict[str, Any], timestamp: str) -> dict[str, Any]:
        """track_session_start's event for a `start` step, run by the process that `facts`
        describe (see `wire.start_event`; an `event_id` among them names the event)."""
        return wire.start_event(
            COMPONENT,
            self.shell_type,
            facts | ({"cwd": self.cwd} if self.cwd else {}),
            timestamp=timestamp,
            metadata=self.metadata,
            event_id=self.event_id or facts.get("event_id"),
        )

    def beat_arguments(self, timestamp: str) -> dict[str, Any]:
        """track_session_heartbeat's arguments for a `beat` step."""
        given = {"activity": self.activity, "detail": self.detail}
        known = {name: value for name, value in given.items() if value is not None}
        return {"external_id": self.external_id, "timestamp": timestamp} | known


def describe(step: Step, result: dict[str, Any]) -> str:
    """What a delivered step did, in one line for people (the tool's result says)."""
    status, session_id = result.get("status"), result.get("session_id")
    if status == "not_found":
        return f"no session for {step.subject}"
    if status == "error":
        return f"{step.kind} not recorded: {result.get('error')}"
    if status == "ignored":
        return f"ignored: {session_id} is {result.get('session_status')}, not active"
    if step.kind == "start":
        return f"tracked {session_id} for {step.subject}"
    if step.kind == "end":
        return f"ended {step.subject}: {session_id} is {result.get('session_status')}"
    return f"{step.activity or 'alive'}: {session_id}"


def parse_payload(raw: bytes) -> dict[str, Any]:
    if len(raw) > wire.MAX_HOOK_PAYLOAD_BYTES:
        raise HookPayloadError(
            f"payload is {len(raw)} bytes (at most {wire.MAX_HOOK_PAYLOAD_BYTES})"
        )
    try:
        payload = json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:
        raise HookPayloadError(f"payload is not JSON: {exc}") from exc
    return checked_payload(payload)


def checked_payload(payload: Any) -> dict[str, Any]:
    """A decoded hook payload, if it is one session-buddy handles; else HookPayloadError."""
    if not isinstance(payload, dict):
        raise HookPayloadError("payload must be a JSON object")
    event = payload.get("hook_event_name")
    if event not in HANDLED:
        raise HookPayloadError(
            f"hook_event_name {event!r} is not handled (use one of {', '.join(HANDLED)})"
        )
    _identifier(payload, "session_id")
    return payload


def _identifier(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX or not value.isprintable():
        raise HookPayloadError(
            f"{key} must be printable text of 1 to {ID_MAX} characters (no control characters)"
        )
    return value


def _clipped(payload: dict[str, Any], key: str, limit: int = 500) -> str | None:
    """A string field of the payload cut to `limit` characters (hook input is never
    refused for its length)."""
    value = payload.get(key)
    return value[:limit] if isinstance(value, str) and value else None


def _subagent_event_id(claude_id: str, agent_id: str) -> str:
    import uuid  # only here: with `platform`, it costs every other hook call 2 ms

    return str(uuid.uuid5(uuid.UUID(_SUBAGENT_EVENTS), f"{claude_id}/{agent_id}"))


def step(payload: dict[str, Any]) -> Step:
    """What a parsed hook payload does to its session."""
    event = payload["hook_event_name"]
    claude_id = payload["session_id"]
    stamp = payload.get(wire.ORIGIN_KEY)
    origin = stamp if isinstance(stamp, dict) else None
    stamped_id = (origin or {}).get("event_id")
    event_id = stamped_id if isinstance(stamped_id, str) else None
    if event == "SessionStart":
        kept = {key: _clipped(payload, key) for key in START_KEPT}
        kept["source"] = kept["source"] or "startup"
        metadata = {"external_id": claude_id} | {k: v for k, v in kept.items() if v}
        return Step(
            "start",
            claude_id,
            metadata=metadata,
            event_id=event_id,
            cwd=_clipped(payload, "cwd"),
            origin=origin,
        )
    if event == "SessionEnd":
        reason = _clipped(payload, "reason", 200) or "other"
        ended = event_id or wire.new_event_id()
        return Step("end", claude_id, event_id=ended, exit_reason=reason, origin=origin)
    if event == "SubagentStart":
        agent_id = _identifier(payload, "agent_id")
        metadata = {"external_id": agent_id, "parent_external_id": claude_id}
        if agent_type := _clipped(payload, "agent_type", 100):
            metadata["agent_type"] = agent_type
        return Step(
            "start",
            agent_id,
            SUBAGENT_SHELL_TYPE,
            "subagent",
            metadata=metadata,
            event_id=_subagent_event_id(claude_id, agent_id),
            cwd=_clipped(payload, "cwd"),
            origin=origin,
        )
    if event == "SubagentStop":
        agent_id = _identifier(payload, "agent_id")
        ended = event_id or wire.new_event_id()
        return Step(
            "end",
            agent_id,
            noun="subagent",
            event_id=ended,
            exit_reason="subagent_stop",
            origin=origin,
        )
    if event == "Notification":
        waiting = payload.get("notification_type") in WAITING
        activity = "waiting_for_input" if waiting else None
        return Step("beat", claude_id, activity=activity, origin=origin)
    detail = _clipped(payload, "error", 200) if event == "StopFailure" else None
    return Step("beat", claude_id, activity=ACTIVITY_OF[event], detail=detail, origin=origin)


def record_in_store(tx: Tx, step: Step, facts: dict[str, Any], received_us: int) -> dict[str, Any]:
    """Carry out a step in a store's write transaction, as the command hook does on the
    local store (no server): what the tool call would have answered. The step's own
    fields are bounded already; identity fields are checked as the wire model does."""
    when = step.stamped(format_micros(received_us) or "")
    at_us = to_micros(parse_timestamp(when))
    if step.kind == "start":
        event = step.start_arguments(facts, when)
        user, place = event["user"], event["environment"]
        origin = SessionOrigin(
            event_id=str(event["event_id"]),
            component_name=COMPONENT,
            shell_type=step.shell_type,
            pid=event["pid"],
            hostname=plain_text("hostname", str(event["hostname"])),
            username=plain_text("user.username", str(user["username"]).strip()),
            cwd=plain_text("environment.cwd", str(place["cwd"]).strip()),
            python_version=plain_text("environment.python_version", place["python_version"]),
            platform=plain_text("environment.platform", place["platform"]),
        )
        new = transitions.NewSession(
            origin=origin,
            home=plain_text("user.home", str(user["home"]).strip()),
            started_us=at_us,
            start_metadata=event["metadata"],
            payload=json.dumps(event, separators=(",", ":")),
            external_id=step.external_id,
            parent_external_id=event["metadata"].get("parent_external_id"),
        )
        started = transitions.start_session(tx, new, received_us)
        return {"status": "tracked", "session_id": started.session_id}
    if step.kind == "end":
        event = step.end_event(when) | {"external_id": step.external_id}
        ending = transitions.SessionEnd(
            None,
            at_us,
            event["metadata"],
            json.dumps(event, separators=(",", ":")),
            external_id=step.external_id,
            event_id=step.event_id,
        )
        ended = transitions.end_session(tx, ending, received_us)
        if not ended.found:
            return {"status": "not_found", "session_id": ended.session_id}
        return {
            "status": "ended",
            "session_id": ended.session_id,
            "session_status": ended.session_status,
        }
    arguments = step.beat_arguments(when)
    beat = transitions.record_heartbeat(
        tx,
        None,
        at_us,
        received_us,
        arguments,
        activity=step.activity,
        external_id=step.external_id,
        detail=step.detail,
    )
    status = "recorded" if beat.session_status == "active" else "ignored"
    said = status if beat.found else "not_found"
    return {"status": said, "session_id": beat.session_id, "session_status": beat.session_status}
