"""Where one start and one end go, in process on a durable SQLite store: SQL statements
per event, pages written to the WAL per event, the statements of a start when 999 others
share its second, a profile of the event loop's thread (where a lone write runs), and
what each index costs (sequential start+end pairs/s with that index dropped, beside all
indexes, in the same run).

    python benchmarks/profile_event.py [--pairs 2000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_core import one_pair, start_event
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionTracker
from stores import create


async def per_event_writes(folder: Path, pairs: int) -> None:
    """Statements and WAL frames per start and per end, from the writer's connection."""
    manager = SessionLifecycleManager(f"sqlite:///{folder}/count.db")
    tracker = SessionTracker(manager)
    connection: sqlite3.Connection = manager.store._writer_connection  # type: ignore[attr-defined]
    await one_pair(tracker, "warm", 0)
    statements: Counter[str] = Counter()
    await manager.store.write(lambda tx: connection.execute("PRAGMA wal_autocheckpoint = 0"))
    await manager.store.write(
        lambda tx: connection.set_trace_callback(
            lambda sql: statements.update([sql.split("(")[0][:48]])
        )
    )
    wal = Path(f"{folder}/count.db-wal")
    page = connection.execute("PRAGMA page_size").fetchone()[0]
    size = wal.stat().st_size
    for n in range(1, pairs + 1):
        await one_pair(tracker, "count", n)
    grown = wal.stat().st_size - size
    await manager.store.write(lambda tx: connection.set_trace_callback(None))
    await manager.close()
    print(f"SQL statements per start+end pair: {sum(statements.values()) / pairs:.1f}")
    for sql, n in statements.most_common():
        print(f"  {n / pairs:4.1f}  {sql}")
    print(f"WAL pages written per event: {grown / (page + 24) / (2 * pairs):.1f}\n")


async def profiled(folder: Path, pairs: int) -> None:
    """cProfile of the event loop's thread over `pairs` sequential pairs (a lone write
    runs and commits there; the writer thread takes only bursts)."""
    manager = SessionLifecycleManager(f"sqlite:///{folder}/profile.db")
    tracker = SessionTracker(manager)
    await one_pair(tracker, "warm", 0)
    profile = cProfile.Profile()
    profile.enable()
    began = time.perf_counter()
    for n in range(1, pairs + 1):
        await one_pair(tracker, "profile", n)
    elapsed = time.perf_counter() - began
    profile.disable()
    await manager.close()
    print(f"profiled {pairs} pairs: {elapsed / pairs * 1000:.2f} ms per pair (with profiling)")
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).sort_stats("tottime")
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(f"-- event loop thread: {total / pairs * 1000:.3f} ms per pair (own time of every call)")
    stats.print_stats(12)
    print("\n".join(out.getvalue().splitlines()[6:]))


async def same_second_starts(folder: Path, starts: int) -> None:
    """SQL statements of the last of `starts` starts dated in the same second."""
    manager = SessionLifecycleManager(f"sqlite:///{folder}/second.db")
    tracker = SessionTracker(manager)
    connection: sqlite3.Connection = manager.store._writer_connection  # type: ignore[attr-defined]
    for pid in range(1, starts):
        await tracker.handle_session_start(start_event("second", 0, pid))
    statements: list[str] = []
    await manager.store.write(lambda tx: connection.set_trace_callback(statements.append))
    last = await tracker.handle_session_start(start_event("second", 0, starts))
    await manager.store.write(lambda tx: connection.set_trace_callback(None))
    await manager.close()
    print(f"start {starts} in one second ({last.session_id}): {len(statements)} statements\n")


async def pairs_per_second(url: str, seconds: float, drop: str | None) -> float:
    manager = SessionLifecycleManager(url)
    if drop is not None:
        await manager.store.write(lambda tx: tx.run(f"DROP INDEX {drop}"))
    tracker = SessionTracker(manager)
    count, deadline = 0, time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        count += 1
        await one_pair(tracker, "index", count)
    rate = count / (time.perf_counter() - began)
    await manager.close()
    return rate


async def index_costs(folder: Path, seconds: float) -> None:
    """Sequential pairs/s with each index dropped, beside the same with all of them."""
    await asyncio.to_thread(create, folder / "schema.db")
    connection = sqlite3.connect(folder / "schema.db")
    indexes = [
        (name, table)
        for name, table in connection.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "ORDER BY tbl_name, name"
        )
    ]
    connection.close()
    runs: dict[str | None, list[float]] = {}
    for attempt in range(2):  # interleaved, so drift hits every case alike
        for name in [None, *(name for name, _ in indexes)]:
            url = f"sqlite:///{folder}/index-{attempt}-{name}.db"
            runs.setdefault(name, []).append(await pairs_per_second(url, seconds, name))
    base = max(runs[None])
    print(f"all indexes: {base:.0f} pairs/s (best of 2 runs of {seconds:.0f} s)")
    for name, table in indexes:
        rate = max(runs[name])
        print(f"  without {table}.{name:<32}: {rate:6.0f} pairs/s = {rate / base:.2f} x")


async def main(pairs: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-profile-") as name:
        folder = Path(name)
        await per_event_writes(folder, pairs)
        await same_second_starts(folder, 1000)
        await profiled(folder, pairs)
        await index_costs(folder, seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    arguments: Any = parser.parse_args()
    os.environ.pop("SESSION_BUDDY_DATABASE_URL", None)
    asyncio.run(main(arguments.pairs, arguments.seconds))
