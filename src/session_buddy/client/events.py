"""Wire-format events built from the running process."""

from __future__ import annotations

import getpass
import os
import platform
import uuid
from pathlib import Path
from typing import Any

from session_buddy.timestamps import now_iso


def _safe(call: Any, fallback: str) -> str:
    try:
        return str(call())
    except (OSError, KeyError, RuntimeError):
        return fallback


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
    return {
        "event_version": "1.0",
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": "session_start",
        "component_name": component_name,
        "shell_type": shell_type[:100],
        "timestamp": now_iso(),
        "pid": pid or os.getpid(),
        "user": {
            "username": _safe(getpass.getuser, "unknown")[:100],
            "home": _safe(Path.home, "")[:500],
        },
        "hostname": platform.node()[:255] or "unknown",
        "environment": {
            "python_version": platform.python_version(),
            "platform": platform.platform()[:255],
            "cwd": (cwd or _safe(os.getcwd, ""))[:500],
        },
        "metadata": metadata or {},
    }


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
        "timestamp": now_iso(),
        "metadata": details,
    }
    if session_id is not None:
        event["session_id"] = session_id
    return event
