"""`POST /hooks/claude-code`: Claude Code's `"type": "http"` hooks, without a process per
event. The same steps as the command hook (`session_buddy.app.claude_code`); the body
carries no pid, so sessions are found by Claude's session id. The answer is an empty
JSON object: it never holds Claude Code up or decides anything for it.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from session_buddy.app import claude_code
from session_buddy.app.auth import WRITE_SCOPE, AuthError, Caller, bearer_token
from session_buddy.app.service import SessionService
from session_buddy.app.tools import call_tool
from session_buddy.timestamps import now_iso

CLAUDE_HOOK_PATH = "/hooks/claude-code"


async def answer_claude_hook(service: SessionService, request: Request) -> Response:
    try:
        caller = Caller(bearer_token(request.headers.get("authorization")))
        claims = service.authorize(caller, WRITE_SCOPE)
    except AuthError as exc:
        status = 403 if exc.code == "forbidden" else 401
        return JSONResponse({"error": f"{exc.code}: {exc}"}, status_code=status)
    try:
        step = claude_code.step(claude_code.parse_payload(await request.body()))
    except claude_code.HookPayloadError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    now = now_iso()
    if step.kind == "beat":
        tool, arguments = "track_session_heartbeat", step.beat_arguments(now)
    elif step.kind == "end":
        tool = "track_session_end"
        arguments = {"external_id": step.external_id, "timestamp": now}
        arguments |= {"metadata": {"exit_reason": step.exit_reason}}
    elif step.shell_type == claude_code.SUBAGENT_SHELL_TYPE:
        tool, arguments = "track_session_start", await _subagent_start(service, step, now)
    else:
        message = "SessionStart needs the command hook: an HTTP hook cannot tell the process"
        return JSONResponse({"error": message}, status_code=400)
    result = await call_tool(service, tool, arguments, claims=claims)
    if result.get("status") in ("error", "not_found"):
        service.logger.warning("Claude Code hook %s for %s: %s", tool, step.external_id, result)
    return JSONResponse({})


async def _subagent_start(
    service: SessionService, step: claude_code.Step, now: str
) -> dict[str, Any]:
    """A subagent's start event: it runs in its Claude Code session's process, on that
    session's host, for its user (unknown ones when the session is not known)."""
    parents = await service.list_sessions(external_id=step.metadata["parent_external_id"], limit=1)
    parent = parents["sessions"][0] if parents["sessions"] else {}
    return {
        "event_version": "1.0",
        "event_id": step.event_id or str(uuid.uuid4()),
        "component_name": claude_code.COMPONENT,
        "shell_type": step.shell_type,
        "timestamp": now,
        "pid": parent.get("pid"),
        "user": {"username": parent.get("username", "unknown"), "home": ""},
        "hostname": parent.get("hostname", "unknown"),
        "environment": {
            "python_version": parent.get("python_version", "unknown"),
            "platform": parent.get("platform", "unknown"),
            "cwd": step.cwd or parent.get("cwd", ""),
        },
        "metadata": step.metadata,
    }
