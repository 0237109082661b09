"""Session states and how an end event's metadata decides between ended and crashed."""

from __future__ import annotations

from enum import StrEnum

TYPE_CHECKING = False  # see session_buddy.lazy: on the Claude Code hook's path
if TYPE_CHECKING:
    from typing import Any


class SessionStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"
    CRASHED = "crashed"
    ABANDONED = "abandoned"


# What an active session is doing, when its client says (Claude Code's hooks do).
ACTIVITIES = ("working", "waiting_for_input", "idle", "failing")


# The first word of an exit_reason (the text before the first ":") that means the process
# did not exit cleanly; other reasons ("signed_out", "terminated_normally") are clean.
CRASH_WORDS = frozenset(
    {
        "crash",
        "crashed",
        "error",
        "exception",
        "signal",
        "killed",
        "oom",
        "panic",
        "abort",
        "segfault",
    }
)


def exit_code_of(metadata: dict[str, Any]) -> int | None:
    """The integer exit code in end metadata, if it carries one (the wire model checked
    that it is an integer)."""
    code = metadata.get("exit_code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def classify_end(metadata: dict[str, Any]) -> tuple[SessionStatus, str | None]:
    """Final state and end reason for a session ending with this metadata."""
    code = exit_code_of(metadata)
    raw_reason = metadata.get("exit_reason")
    # NUL written out: PostgreSQL text cannot hold it, and both stores answer the same.
    reason = str(raw_reason)[:200].replace("\x00", "\\x00") if raw_reason is not None else None
    first_word = reason.split(":", 1)[0].strip().lower() if reason is not None else ""
    if (code is not None and code != 0) or first_word in CRASH_WORDS:
        return SessionStatus.CRASHED, reason or f"exit_code {code}"
    return SessionStatus.ENDED, reason
