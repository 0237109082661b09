"""Filling a SQLite store with many finished sessions fast, for the benchmarks that need
a big store (bulk inserts into the real schema, not the event path)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

from session_buddy.core import SessionLifecycleManager

STATES = ("ended",) * 18 + ("crashed", "abandoned")
SESSION_COLUMNS = (
    "session_id, event_id, component_name, shell_type, pid, hostname, username, home, cwd, "
    "python_version, platform, status, started_us, ended_us, last_seen_us, received_us, "
    "duration_seconds, end_reason, exit_code, start_metadata, end_metadata"
)


def create(path: Path) -> str:
    """A new store at `path` with the current schema; its URL."""
    url = f"sqlite:///{path}"
    asyncio.run(SessionLifecycleManager(url).close())
    return url


def fill(path: Path, count: int, *, first_start_us: int, spacing_us: int) -> None:
    """`count` finished sessions (mostly ended; crashed and abandoned among them) of 12
    components on 50 hosts, started `spacing_us` apart from `first_start_us`, each with
    its start and end events."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("BEGIN")
    for first in range(0, count, 10_000):
        sessions, events = [], []
        for number in range(first, min(first + 10_000, count)):
            started = first_start_us + number * spacing_us
            took = 5 + number % 3600
            state = STATES[number % len(STATES)]
            session_id = f"bulk-{number}"
            sessions.append(
                (session_id, str(uuid.UUID(int=number)), f"component-{number % 12}", "Bench",
                 1000 + number % 30000, f"host-{number % 50}", "bench", "/home/bench", "/srv",
                 "3.11", "Linux", state, started, started + took * 1_000_000, started, started,
                 float(took), "exit" if state == "ended" else state, 0 if state == "ended" else 1,
                 "{}", "{}")
            )  # fmt: skip
            events += [
                (started, "session_start", session_id, "tracked", '{"component_name": "bulk"}'),
                (started + took * 1_000_000, "session_end", session_id, state, "{}"),
            ]
        placeholders = ", ".join("?" * len(SESSION_COLUMNS.split(",")))
        connection.executemany(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({placeholders})", sessions
        )
        connection.executemany(
            "INSERT INTO events (received_us, event_type, session_id, outcome, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            events,
        )
    connection.execute("COMMIT")
    connection.close()
