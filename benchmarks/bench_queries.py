"""Queries over 1,000,000 stored sessions (embedded SQLite).

Fills a store with N sessions across components, hosts, users and states (bulk SQL, not
through the tracker), then prints p50/p95 of filtered `list_sessions` pages (first pages
and deep pages via cursors) and the time of `session_stats` over all of them, beside the
floor of a primary-key lookup measured in the same run.

    python benchmarks/bench_queries.py [--sessions 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from session_buddy.core import SessionLifecycleManager

COMPONENTS = [f"component{n}" for n in range(40)]
STATES = ["ended"] * 80 + ["crashed"] * 8 + ["abandoned"] * 7 + ["active"] * 5
BASE_US = 1_767_225_600_000_000  # 2026-01-01


def fill(path: Path, count: int) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    connection.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    for n in range(count):
        started = BASE_US + n * 20_000_000 + rng.randrange(1_000_000)
        state = rng.choice(STATES)
        duration = rng.expovariate(1 / 1800) if state != "active" else None
        ended = started + int(duration * 1_000_000) if duration is not None else None
        component = rng.choice(COMPONENTS)
        batch.append(
            (
                f"{component}-{n}",
                f"00000000-0000-4000-8000-{n:012d}",
                component,
                rng.choice(["IPython", "Agent", "Script"]),
                1 + n % 4_000_000,
                f"host{rng.randrange(30)}",
                f"user{rng.randrange(200)}",
                "/home/u",
                "/srv",
                "3.12",
                "Linux",
                state,
                started,
                ended,
                ended or started,
                started,
                duration,
                "{}",
            )
        )
        if len(batch) == 10_000:
            connection.executemany(
                "INSERT INTO sessions (session_id, event_id, component_name, shell_type, pid, "
                "hostname, username, home, cwd, python_version, platform, status, started_us, "
                "ended_us, last_seen_us, received_us, duration_seconds, start_metadata) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            batch.clear()
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.close()


async def timed(runs: int, action: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples = []
    for n in range(runs):
        began = time.perf_counter()
        await action(n)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def show(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"{label:<44}: p50 {statistics.median(samples):7.2f} ms   p95 {p95:7.2f} ms")


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-bench-queries-") as folder:
        path = Path(folder) / "sessions.db"
        SessionLifecycleManager(f"sqlite:///{path}")  # creates the schema
        began = time.perf_counter()
        fill(path, count)
        print(f"filled {count:,} sessions in {time.perf_counter() - began:.0f} s")
        async with SessionLifecycleManager(f"sqlite:///{path}") as manager:
            rng = random.Random(3)
            show(
                "floor: get_session by id",
                await timed(
                    200, lambda n: manager.get_session(f"component1-{rng.randrange(count)}")
                ),
            )
            show("list_sessions (no filter)", await timed(200, lambda n: manager.list_sessions()))
            show(
                "list_sessions status=crashed",
                await timed(200, lambda n: manager.list_sessions(status="crashed")),
            )
            show(
                "list_sessions status=active",
                await timed(200, lambda n: manager.list_sessions(status="active")),
            )
            show(
                "list_sessions component_name=...",
                await timed(
                    200, lambda n: manager.list_sessions(component_name=rng.choice(COMPONENTS))
                ),
            )
            show(
                "list_sessions hostname+status",
                await timed(
                    200,
                    lambda n: manager.list_sessions(
                        hostname=f"host{rng.randrange(30)}", status="crashed"
                    ),
                ),
            )
            show(
                "list_sessions username=... (rare)",
                await timed(
                    200, lambda n: manager.list_sessions(username=f"user{rng.randrange(200)}")
                ),
            )
            page = await manager.list_sessions(limit=500)
            for _ in range(20):
                page = await manager.list_sessions(limit=500, cursor=page["next_cursor"])
            deep = page["next_cursor"]
            show(
                "list_sessions page 22 (cursor)",
                await timed(200, lambda n: manager.list_sessions(cursor=deep)),
            )
            for group_by in ("component_name", "username"):
                began = time.perf_counter()
                stats = await manager.session_stats(group_by=group_by)
                took = time.perf_counter() - began
                print(
                    f"session_stats by {group_by:<15} over all   : {took * 1000:7.0f} ms "
                    f"({len(stats['groups'])} groups; target <= 1000 ms)"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().sessions))
