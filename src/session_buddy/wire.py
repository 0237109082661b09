"""Wire v1.0 start events as plain JSON, built without pydantic: clients and hooks build
one on every call, and `mcp.event_models` validates them where they arrive. And what the
Claude Code hook endpoint takes beside Claude's own payload."""

from __future__ import annotations

from typing import Any

# The largest Claude Code hook payload taken (the command hook and the endpoint).
MAX_HOOK_PAYLOAD_BYTES = 1024 * 1024
# The command hook adds the facts of Claude Code's process (pid, host, user, event id) to
# a SessionStart payload under this key before it posts it to the server.
ORIGIN_KEY = "session_buddy_origin"


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
    import uuid  # here: the Claude Code hook loads this module for heartbeats too

    return {
        "event_version": "1.0",
        "event_id": event_id or str(uuid.uuid4()),
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
