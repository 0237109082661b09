"""Wire v1.0 start events as plain JSON, built without pydantic: clients and hooks build
one on every call, and `mcp.event_models` validates them where they arrive. And what the
Claude Code hook endpoint takes beside Claude's own payload."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # see session_buddy.lazy
if TYPE_CHECKING:
    from typing import Any

# The largest Claude Code hook payload taken (the command hook and the endpoint).
MAX_HOOK_PAYLOAD_BYTES = 1024 * 1024
# The command hook stamps each payload under this key with its own time and an event id
# (and, for a SessionStart, the facts of Claude Code's process) before it posts it to the
# server, so that whichever way the event goes, and however often, it is the same event.
ORIGIN_KEY = "session_buddy_origin"
# What became of a hook payload's delivery: the values of client.outcomes.Outcome (not
# imported: the hook must not load the transports).
DELIVERED, TRANSIENT, REFUSED, CREDENTIALS = "delivered", "transient", "refused", "credentials"


def stamp_time() -> str:
    """Now, as ISO 8601 UTC text with microseconds and `Z` (`datetime` costs a hook)."""
    import time

    nanoseconds = time.time_ns()
    seconds, micros = divmod(nanoseconds // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def new_event_id() -> str:
    """A random RFC 4122 version 4 UUID (importing `uuid` costs a hook ~10 ms)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    hexed = raw.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def start_event(
    component_name: str,
    shell_type: str,
    facts: dict[str, Any],
    *,
    timestamp: str,
    metadata: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A session_start event for the process that `facts` describe (`pid`, `username`,
    `home`, `hostname`, `python_version`, `platform`, `cwd`; missing ones are unknown)."""
    return {
        "event_version": "1.0",
        "event_id": event_id or new_event_id(),
        "event_type": "session_start",
        "component_name": component_name,
        "shell_type": shell_type[:100],
        "timestamp": timestamp,
        "pid": facts.get("pid"),
        "user": {"username": facts.get("username", "unknown"), "home": facts.get("home", "")},
        "hostname": facts.get("hostname", "unknown"),
        "environment": {
            "python_version": facts.get("python_version", "unknown"),
            "platform": facts.get("platform", "unknown"),
            "cwd": facts.get("cwd", ""),
        },
        "metadata": metadata or {},
    }
