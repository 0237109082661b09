"""Wire-format events built from the running process."""

from __future__ import annotations

import getpass
import os
import platform
from typing import Any

from session_buddy import wire
from session_buddy.processes import launcher_pid
from session_buddy.timestamps import now_iso


def _safe(call: Any, fallback: str) -> str:
    try:
        return str(call())
    except (OSError, KeyError, RuntimeError):
        return fallback


def process_facts(pid: int | None = None, cwd: str | None = None) -> dict[str, Any]:
    """What a start event says of the process that runs a session: `pid` (default this
    one), its user, host, Python, platform and working directory."""
    return {
        "pid": pid or os.getpid(),
        "username": _safe(getpass.getuser, "unknown")[:100],
        "home": os.path.expanduser("~")[:500],
        "hostname": platform.node()[:255] or "unknown",
        "python_version": platform.python_version(),
        "platform": platform.platform()[:255],
        "cwd": (cwd or _safe(os.getcwd, ""))[:500],
    }


def launcher_facts() -> dict[str, Any]:
    """The facts of the program that ran this command — past the `sh -c` wrappers it ran
    it through, e.g. Claude Code for its hooks; pid None when unclear — with the id of
    the start event they go into, so that a start sent twice is one event."""
    return process_facts() | {"pid": launcher_pid(), "event_id": wire.new_event_id()}


def start_event(
    component_name: str,
    shell_type: str,
    *,
    pid: int | None = None,
    cwd: str | None = None,
    metadata: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A session_start event describing this process (or `pid`, e.g. a parent shell)."""
    timestamp = now_iso()  # the session starts now, not once its facts are gathered
    return wire.start_event(
        component_name,
        shell_type,
        process_facts(pid, cwd),
        timestamp=timestamp,
        metadata=metadata,
        event_id=event_id,
    )


def end_event(
    session_id: str | None,
    *,
    exit_code: int | None = 0,
    exit_reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    details: dict[str, Any] = dict(metadata or {})
    if exit_code is not None:
        details["exit_code"] = exit_code
    if exit_reason is not None:
        details["exit_reason"] = exit_reason
    event: dict[str, Any] = {
        "event_type": "session_end",
        "event_id": wire.new_event_id(),  # a second delivery of this end changes nothing
        "timestamp": now_iso(),
        "metadata": details,
    }
    if session_id is not None:
        event["session_id"] = session_id
    return event
