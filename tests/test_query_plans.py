"""Every index is there for a query, and no query reads a table whole: the SQL that a
server's work issues on a real SQLite store, each statement through EXPLAIN QUERY PLAN.

Indexes cost every start and end (benchmarks/profile_event.py measures how much), so one
that no query uses is a defect (unique ones are constraints, read or not), and so is a
query that scans all sessions, or walks them all to find the few active ones.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import end_event, start_event
from session_buddy.core import SessionLifecycleManager
from session_buddy.core.records import GROUP_KEYS
from session_buddy.mcp import SessionTracker

WINDOW = "2026-02-01T00:00:00Z"


@pytest.fixture
async def statements(path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
    """The SQL of every sqlite3 connection opened meanwhile on a store made (migrated)
    beforehand, parameters filled in."""
    await SessionLifecycleManager(f"sqlite:///{path}").close()
    seen: list[str] = []
    connect = sqlite3.connect

    def tracing(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(seen.append)
        return connection

    monkeypatch.setattr(sqlite3, "connect", tracing)
    yield seen


async def a_servers_work(path: Path) -> None:
    """Starts, ends, heartbeats, Claude-style external ids, and every read and upkeep
    query: each filter alone and with a state, stats per key over all time and in a
    window, the dashboard's overview, the event log, reaping and pruning."""
    async with SessionLifecycleManager(f"sqlite:///{path}") as manager:
        tracker = SessionTracker(manager)
        ids = []
        for i in range(6):
            started = await tracker.handle_session_start(
                start_event(component_name=f"c{i % 2}", pid=100 + i, timestamp=WINDOW)
            )
            assert started.session_id
            ids.append(started.session_id)
        await tracker.handle_session_end(end_event(ids[0], "2026-02-01T00:01:00Z"))
        await tracker.handle_session_end(end_event(ids[1], "2026-02-01T00:02:00Z", exit_code=3))
        await tracker.handle_session_end(end_event("no-such-session", "2026-02-01T00:02:00Z"))
        await manager.heartbeat(ids[2], activity="working")
        twice = end_event(ids[3], "2026-02-01T00:03:00Z").model_copy(
            update={"event_id": str(uuid.uuid4())}
        )
        await tracker.handle_session_end(twice)
        await tracker.handle_session_end(twice)  # delivered again
        claude = {"component_name": "claude-code", "timestamp": WINDOW}
        external = start_event(**claude, pid=None, metadata={"external_id": "claude-1"})
        await tracker.handle_session_start(external)
        await tracker.handle_session_start(external)  # a repeat while it runs
        resumed = start_event(**claude, pid=4242, metadata={"external_id": "claude-1"})
        await tracker.handle_session_start(resumed)  # from another process
        await tracker.handle_session_start(resumed)  # delivered again
        await manager.heartbeat(None, external_id="claude-1", activity="idle")
        filters = {
            "status": "active",
            "component_name": "c1",
            "shell_type": "bash",
            "hostname": "server01",
            "username": "u",
            "external_id": "claude-1",
            "activity": "working",
        }
        for column, value in filters.items():
            await manager.list_sessions(**{column: value})
            await manager.list_sessions(**{column: value, "status": "crashed"})
        await manager.list_sessions(started_after=WINDOW)
        await manager.list_sessions(status="ended", cursor=None, limit=1)
        for key in (None, *GROUP_KEYS):
            await manager.session_stats(key)
            await manager.session_stats(key, WINDOW, bucket="day")
            await manager.session_stats(key, status="ended")
        await manager.overview(WINDOW, bucket="hour", hostname="server01")
        await manager.get_session(ids[0])
        await manager.linked_to(ids[0])
        await manager.session_events(ids[0])
        await manager.most_frequent_components(10)
        await manager.active_count()
        await manager.reap()
        await manager.prune("2026-03-01T00:00:00Z", dry_run=True)
        await manager.prune("2026-03-01T00:00:00Z")


def plans(path: Path, statements: list[str]) -> dict[str, list[str]]:
    """Each data statement (not BEGIN, PRAGMA, DDL or the schema's own bookkeeping) and
    the steps of its query plan."""
    data = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
    connection = sqlite3.connect(path)
    found = {}
    for sql in statements:
        if data.match(sql) and "sqlite_master" not in sql:
            rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            found[sql] = [str(row[3]) for row in rows]
    connection.close()
    return found


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


async def test_every_index_is_used_and_no_query_scans_a_table(
    path: Path, statements: list[str]
) -> None:
    await a_servers_work(path)
    found = plans(path, statements)
    assert len(found) > 50
    scans = {sql: steps for sql, steps in found.items() if any(
        re.fullmatch(r"SCAN (sessions|events)", step) for step in steps
    )}  # fmt: skip
    assert scans == {}
    # Active sessions are few: found by a search or their own partial indexes, never by
    # walking the index of every session (by start time, say) and checking each.
    walks = {
        sql: steps
        for sql, steps in found.items()
        if "status = 'active'" in sql
        and any(re.match(r"SCAN sessions USING (COVERING )?INDEX (?!sessions_active_)", step)
                for step in steps)
    }  # fmt: skip
    assert walks == {}
    connection = sqlite3.connect(path)
    indexes = {
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND sql NOT LIKE 'CREATE UNIQUE %' AND tbl_name IN ('sessions', 'events')"
        )
    }
    connection.close()
    used = {
        index
        for steps in found.values()
        for step in steps
        for index in re.findall(r"INDEX (\w+)", step)
    }
    assert indexes - used == set()
