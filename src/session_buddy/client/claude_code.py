"""The Claude Code command hook: one hook payload (JSON on stdin) acted on through a
courier, so that undeliverable starts and ends are spooled for their destination.

What each event means is decided in `session_buddy.app.claude_code`, shared with the
server's `POST /hooks/claude-code`.
"""

from __future__ import annotations

from session_buddy.app.claude_code import Step, describe
from session_buddy.client.delivery import Courier, Sent
from session_buddy.client.events import launcher_facts
from session_buddy.client.outcomes import Attempt, Outcome
from session_buddy.timestamps import now_iso


def record(step: Step, courier: Courier, unconfirmed: str = "") -> str:
    """Act on one hook step; a line saying truthfully what happened (`unconfirmed`: why
    the quick path sent it and heard no confirmation, so this is a second try)."""
    sent: Sent | Attempt
    now = step.stamped(now_iso())
    if step.kind == "start":
        facts = step.origin or launcher_facts()
        sent = courier.start(step.start_arguments(facts, now))
    elif step.kind == "end":
        sent = courier.end_external(step.external_id, step.end_event(now) | _END)
    else:
        sent = courier.beat(step.beat_arguments(now))
    first = f"sent, unconfirmed ({unconfirmed}); " if unconfirmed else ""
    if sent.outcome is Outcome.DELIVERED or sent.result.get("status") == "not_found":
        return first + describe(step, sent.result)
    if isinstance(sent, Sent) and sent.spooled:
        return f"{first}spooled the {step.kind} for later"
    return f"{first}{step.kind} not recorded: {sent.reason}"


_END = {"event_type": "session_end"}
