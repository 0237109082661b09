"""An acknowledged event survives SIGKILL of the process that wrote it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import start_event
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionTracker

WRITER = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from session_buddy.core import SessionLifecycleManager
    from session_buddy.mcp import SessionTracker, SessionStartEvent

    async def writer(tracker, lane):
        n = 0
        while True:
            n += 1
            event = SessionStartEvent.model_validate({
                "event_version": "1.0", "event_id": str(uuid.uuid4()),
                "component_name": f"lane{lane}", "shell_type": "KillShell",
                "timestamp": f"2026-02-06T12:{n // 60 % 60:02d}:{n % 60:02d}Z",
                "pid": 1 + lane * 100_000 + n, "user": {"username": "k", "home": "/k"},
                "hostname": "killhost",
                "environment": {"python_version": "3", "platform": "L", "cwd": "/"},
                "metadata": {"n": n, "lane": lane},
            })
            result = await tracker.handle_session_start(event)
            assert result.status == "tracked", result.error
            print(result.session_id, event.event_id, flush=True)

    async def main():
        tracker = SessionTracker(SessionLifecycleManager(sys.argv[1]))
        await asyncio.gather(*(writer(tracker, lane) for lane in range(16)))

    asyncio.run(main())
    """
)


def test_acknowledged_sessions_survive_sigkill(tmp_path: Path) -> None:
    database = tmp_path / "killed.db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite:///{database}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        session_id, event_id = line.split()
        acknowledged[session_id] = event_id
    os.kill(child.pid, signal.SIGKILL)
    # Whatever the child printed before it died was acknowledged too.
    for line in child.stdout:
        session_id, event_id = line.split()
        acknowledged[session_id] = event_id
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300

    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {
            row[0]: row[1:]
            for row in connection.execute(
                "SELECT session_id, event_id, status, hostname, start_metadata FROM sessions"
            )
        }
        logged = {
            row[0]
            for row in connection.execute(
                "SELECT session_id FROM events WHERE event_type = 'session_start'"
            )
        }
    finally:
        connection.close()
    for session_id, event_id in acknowledged.items():
        assert session_id in stored, f"acknowledged {session_id} was lost"
        stored_event_id, status, hostname, metadata = stored[session_id]
        assert (stored_event_id, status, hostname) == (event_id, "active", "killhost")
        assert '"lane"' in metadata
        assert session_id in logged
    assert set(stored) == logged  # no session without its event, and vice versa


async def test_store_reopens_and_accepts_writes_after_a_kill(tmp_path: Path) -> None:
    database = tmp_path / "killed.db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite:///{database}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for _ in range(50):
        child.stdout.readline()
    child.kill()
    child.wait()
    async with SessionLifecycleManager(f"sqlite:///{database}") as manager:
        result = await SessionTracker(manager).handle_session_start(start_event())
        assert result.status == "tracked"
        assert (await manager.get_session(result.session_id or "")) is not None
