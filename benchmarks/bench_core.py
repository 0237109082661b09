"""Durable SQLite throughput of the core, beside a bare sqlite3 floor from the same run.

Prints sequential start+end pairs per second through SessionTracker, events per second
with 64 concurrent callers (group commit), and the same figures for a bare sqlite3 loop
doing one durable (WAL, synchronous=FULL) single-row commit per event.

    python benchmarks/bench_core.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionEndEvent, SessionStartEvent, SessionTracker
from session_buddy.mcp.event_models import EnvironmentInfo, UserInfo

CONCURRENCY = 64
# Events are dated in the recent past: the server refuses times over 24 h ahead of it.
BENCH_EPOCH = datetime.now(UTC) - timedelta(days=30)


def bare_sqlite_commits_per_second(path: Path, seconds: float) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    count, deadline = 0, time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 200,))
        connection.execute("COMMIT")
        count += 1
    elapsed = time.perf_counter() - began
    connection.close()
    return count / elapsed


def start_event(component: str, second: int, pid: int = 4242) -> SessionStartEvent:
    return SessionStartEvent(
        event_version="1.0",
        event_id=str(uuid.uuid4()),
        component_name=component,
        shell_type="BenchShell",
        timestamp=(BENCH_EPOCH + timedelta(seconds=second)).isoformat(),
        pid=pid,
        user=UserInfo(username="bench", home="/home/bench"),
        hostname="bench-host",
        environment=EnvironmentInfo(python_version="3.11", platform="Linux", cwd="/tmp"),
    )


def end_event(session_id: str, second: int) -> SessionEndEvent:
    return SessionEndEvent(
        session_id=session_id,
        timestamp=(BENCH_EPOCH + timedelta(seconds=second + 1)).isoformat(),
        metadata={"exit_code": 0},
    )


async def one_pair(tracker: SessionTracker, component: str, n: int, pid: int = 4242) -> None:
    started = await tracker.handle_session_start(start_event(component, n, pid))
    assert started.session_id is not None, started.error
    ended = await tracker.handle_session_end(end_event(started.session_id, n))
    assert ended.status == "ended", ended.error


async def sequential_pairs_per_second(tracker: SessionTracker, seconds: float) -> float:
    count, deadline = 0, time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        await one_pair(tracker, "seq", count)
        count += 1
    return count / (time.perf_counter() - began)


async def concurrent_events_per_second(tracker: SessionTracker, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    counts = [0] * CONCURRENCY

    async def caller(index: int) -> None:
        while time.perf_counter() < deadline:
            await one_pair(tracker, f"conc{index}", counts[index], pid=1000 + index)
            counts[index] += 1

    began = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(CONCURRENCY)))
    return 2 * sum(counts) / (time.perf_counter() - began)


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as folder:
        floor = bare_sqlite_commits_per_second(Path(folder) / "bare.db", seconds)
        manager = SessionLifecycleManager(f"sqlite:///{folder}/sessions.db")
        tracker = SessionTracker(manager)
        sequential = await sequential_pairs_per_second(tracker, seconds)
        concurrent = await concurrent_events_per_second(tracker, seconds)
        await manager.close()
    print(f"bare sqlite3 durable single-row commits/s : {floor:10.0f}  (floor)")
    print(
        f"sequential start+end pairs/s             : {sequential:10.0f}  "
        f"= {sequential / (floor / 2):.2f} x floor/2  (target >= 0.3; one commit per event)"
    )
    print(
        f"events/s with {CONCURRENCY} concurrent callers       : {concurrent:10.0f}  "
        f"= {concurrent / floor:.2f} x floor    (target >= 0.75; group commit)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(main(parser.parse_args().seconds))
