"""`POST /hooks/claude-code`: Claude Code's `"type": "http"` hooks, without a process per
event. The same steps as the command hook (`session_buddy.app.claude_code`); the body
carries no pid, so sessions are found by Claude's session id. The answer is an empty
JSON object: it never holds Claude Code up or decides anything for it.

The command hook posts here too, as its quick path: its SessionStart adds the facts of
Claude Code's process (`wire.ORIGIN_KEY`), and it reads what happened from the
`Session-Buddy-Outcome` header.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from session_buddy.app import claude_code
from session_buddy.app.auth import WRITE_SCOPE, AuthError, Caller, bearer_token
from session_buddy.app.service import SessionService
from session_buddy.app.tools import call_tool
from session_buddy.core.errors import NotOwner, StoreUnavailable
from session_buddy.timestamps import now_iso
from session_buddy.web.middleware import auth_refusal, refusal

CLAUDE_HOOK_PATH = "/hooks/claude-code"
# What the hook did, for the command hook's own stderr line (Claude Code ignores it).
OUTCOME_HEADER = "Session-Buddy-Outcome"


async def answer_claude_hook(service: SessionService, request: Request) -> Response:
    try:
        caller = Caller(bearer_token(request.headers.get("authorization")))
        claims = service.authorize(caller, WRITE_SCOPE)
    except AuthError as exc:
        return auth_refusal(exc)
    try:
        payload = claude_code.parse_payload(await request.body())
        step = claude_code.step(payload)
        tool, arguments = await _call_for(service, step)
    except claude_code.HookPayloadError as exc:
        return refusal(400, "invalid_argument", str(exc))
    result = await call_tool(service, tool, arguments, claims=claims)
    if result.get("error_code") == NotOwner.code:  # another subject's Claude session
        return refusal(403, NotOwner.code, str(result.get("error")))
    outcome = claude_code.describe(step, result)
    if result.get("status") in ("error", "not_found"):
        service.logger.warning("Claude Code hook %s: %s", tool, outcome)
    # A store that cannot write now is worth a retry: the command hook spools on a 503.
    unavailable = result.get("error_code") == StoreUnavailable.code
    headers = {OUTCOME_HEADER: header_safe(outcome)}
    return JSONResponse({}, status_code=503 if unavailable else 200, headers=headers)


async def _call_for(service: SessionService, step: claude_code.Step) -> tuple[str, dict[str, Any]]:
    """The tool call a hook step makes, at the time the command hook stamped it (else at
    the server's time: an `http` hook from Claude Code itself)."""
    now = step.stamped(now_iso())
    if step.kind == "beat":
        return "track_session_heartbeat", step.beat_arguments(now)
    if step.kind == "end":
        return "track_session_end", step.end_event(now) | {"external_id": step.external_id}
    if step.shell_type == claude_code.SUBAGENT_SHELL_TYPE:
        facts = await _parent_facts(service, (step.metadata or {})["parent_external_id"])
    elif step.origin is not None:
        facts = step.origin
    else:
        raise claude_code.HookPayloadError(
            "SessionStart needs the command hook: an HTTP hook cannot tell the process"
        )
    return "track_session_start", step.start_arguments(facts, now)


def header_safe(text: str) -> str:
    """Text as a header value may hold it: ASCII, control characters written out."""
    ascii_text = text.encode("ascii", "backslashreplace").decode()
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in ascii_text)


async def _parent_facts(service: SessionService, parent_external_id: str) -> dict[str, Any]:
    """A subagent runs in its Claude Code session's process, on that session's host, for
    its user (unknown ones when the session is not known)."""
    parents = await service.list_sessions(external_id=parent_external_id, limit=1)
    return parents["sessions"][0] if parents["sessions"] else {}
