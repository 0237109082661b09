"""The Claude Code command hook: one hook payload (JSON on stdin) acted on through a
courier, so that undeliverable starts and ends are spooled for their destination.

What each event means is decided in `session_buddy.app.claude_code`, shared with the
server's `POST /hooks/claude-code`.
"""

from __future__ import annotations

from session_buddy.app.claude_code import COMPONENT, Step
from session_buddy.client.delivery import Courier
from session_buddy.client.events import end_event, start_event
from session_buddy.client.outcomes import Outcome
from session_buddy.processes import launcher_pid
from session_buddy.timestamps import now_iso


def record(step: Step, courier: Courier) -> str:
    """Act on one hook step; a line saying truthfully what happened."""
    if step.kind == "start":
        event = start_event(
            COMPONENT, step.shell_type, cwd=step.cwd, metadata=step.metadata, event_id=step.event_id
        )
        # Claude Code itself, past the `sh -c` it runs hooks with; none when unclear.
        event["pid"] = launcher_pid()
        started = courier.start(event)
        if started.session_id:
            return f"tracked {started.session_id} for {step.subject}"
        if started.spooled:
            return "spooled the start for later"
        return f"start not recorded: {started.reason}"
    if step.kind == "end":
        event = end_event(None, exit_code=None, exit_reason=step.exit_reason)
        ended = courier.end_external(step.external_id, event)
        if ended.outcome is Outcome.DELIVERED:
            state = ended.result.get("session_status")
            return f"ended {step.subject}: {ended.result.get('session_id')} is {state}"
        if ended.result.get("status") == "not_found":
            return f"no session for {step.subject}"
        return "spooled the end for later" if ended.spooled else f"end not recorded: {ended.reason}"
    beat = courier.beat(step.beat_arguments(now_iso()))
    if beat.outcome is Outcome.DELIVERED and beat.result.get("status") == "recorded":
        return f"{step.activity or 'alive'}: {beat.result.get('session_id')}"
    if beat.result.get("status") == "not_found":
        return f"no session for {step.subject}"
    return f"activity not recorded: {beat.reason or beat.result.get('status')}"
