"""The Claude Code command hook: one hook payload (JSON on stdin) acted on through a
courier, so that undeliverable starts and ends are spooled for their destination.

What each event means is decided in `session_buddy.app.claude_code`, shared with the
server's `POST /hooks/claude-code`.
"""

from __future__ import annotations

from session_buddy.app.claude_code import Step, describe
from session_buddy.client.delivery import Courier, Sent
from session_buddy.client.events import end_event, launcher_facts
from session_buddy.client.outcomes import Attempt, Outcome
from session_buddy.timestamps import now_iso


def record(step: Step, courier: Courier) -> str:
    """Act on one hook step; a line saying truthfully what happened."""
    sent: Sent | Attempt
    if step.kind == "start":
        facts = step.origin or launcher_facts()
        sent = courier.start(step.start_arguments(facts, now_iso()))
    elif step.kind == "end":
        event = end_event(None, exit_code=None, exit_reason=step.exit_reason)
        sent = courier.end_external(step.external_id, event)
    else:
        sent = courier.beat(step.beat_arguments(now_iso()))
    if sent.outcome is Outcome.DELIVERED or sent.result.get("status") == "not_found":
        return describe(step, sent.result)
    if isinstance(sent, Sent) and sent.spooled:
        return f"spooled the {step.kind} for later"
    return f"{step.kind} not recorded: {sent.reason}"
