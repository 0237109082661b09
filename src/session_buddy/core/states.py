"""Session states and how an end event's metadata decides between ended and crashed."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class SessionStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"
    CRASHED = "crashed"
    ABANDONED = "abandoned"


# What an active session is doing, when its client says (Claude Code's hooks do).
ACTIVITIES = ("working", "waiting_for_input", "idle", "failing")


# exit_reason values (or prefixes, e.g. "signal:SIGTERM", "exception_raised") that mean the
# process did not exit cleanly. Unknown reasons are kept and count as a clean exit.
ABNORMAL_REASONS = (
    "crash",
    "error",
    "exception",
    "signal",
    "sig",
    "kill",
    "abort",
    "panic",
    "fatal",
    "segfault",
    "oom",
    "uncaught",
    "terminated",
)


def exit_code_of(metadata: dict[str, Any]) -> int | None:
    """The integer exit code in end metadata, if it carries one."""
    code = metadata.get("exit_code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code)
    return None


def classify_end(metadata: dict[str, Any]) -> tuple[SessionStatus, str | None]:
    """Final state and end reason for a session ending with this metadata."""
    code = exit_code_of(metadata)
    raw_reason = metadata.get("exit_reason")
    reason = str(raw_reason)[:200] if raw_reason is not None else None
    abnormal_reason = reason is not None and reason.strip().lower().startswith(ABNORMAL_REASONS)
    if (code is not None and code != 0) or abnormal_reason:
        return SessionStatus.CRASHED, reason or f"exit_code {code}"
    return SessionStatus.ENDED, reason
