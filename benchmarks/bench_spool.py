"""The spool under a backlog: enqueue cost with 0 and 20,000 pending records, and the wall
time of `emit start` and of the Claude Code hook with 10,000 pending records, beside a
bare `python -c pass` measured in the same run.

Usage: python benchmarks/bench_spool.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from processes import free_port, http_server, wall_times
from session_buddy.client.events import start_event
from session_buddy.client.spool import Destination, Spool


def start_record() -> dict[str, Any]:
    return {"kind": "start", "event": start_event("bench", "BenchShell")}


def median_ms(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples) * 1000:7.2f} ms  max {max(samples) * 1000:7.2f} ms"


def enqueue_cost(spool: Spool, destination: Destination, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        record = start_record()
        began = time.perf_counter()
        spool.enqueue(destination, record)
        samples.append(time.perf_counter() - began)
    return samples


def fill(spool: Spool, destination: Destination, count: int) -> None:
    """Many pending records quickly (one transaction), as a long outage leaves them."""
    db = spool._db()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO records (destination, identity, state, body, created_us) "
        "VALUES (?, '', 'pending', ?, 0)",
        [(destination.url, json.dumps(start_record())) for _ in range(count)],
    )
    db.execute("COMMIT")


def report(name: str, samples: list[float], floor: list[float] | None = None) -> None:
    ratio = ""
    if floor:
        ratio = f"  = {statistics.median(samples) / statistics.median(floor):5.1f} x python -c pass"
    print(f"{name:<52}: {median_ms(samples)}{ratio}")


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-bench-spool-") as folder:
        here = Path(folder)
        idle = Destination("http://127.0.0.1:9/mcp")
        spool = Spool(here / "enqueue.db", max_pending=1_000_000)
        empty = enqueue_cost(spool, idle, 200)
        spool.delivered([r.id for r in spool.head(idle.url, 1000)])
        fill(spool, idle, 20_000)
        backlog = enqueue_cost(spool, idle, 200)
        spool.close()
        report("enqueue, 0 pending", empty)
        report("enqueue, 20,000 pending", backlog)

        port = free_port()
        down = f"http://127.0.0.1:{port}/mcp"  # refused: nobody listens yet
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env |= {
            "SESSION_BUDDY_SPOOL": str(here / "cli.db"),
            "SESSION_BUDDY_DATABASE_URL": f"sqlite:///{here / 'sessions.db'}",
        }
        cli = Spool(here / "cli.db", max_pending=1_000_000)
        fill(cli, Destination(down), 10_000)
        cli.close()
        floor = wall_times([sys.executable, "-c", "pass"], env, runs)
        report("python -c pass", floor)
        emit = [sys.executable, "-m", "session_buddy", "emit", "start", "--component", "b"]
        emit = [*emit, "--server-url", down]
        report("emit start, server down, 10,000 pending", wall_times(emit, env, runs), floor)
        hook = [sys.executable, "-m", "session_buddy", "hook", "claude-code", "--server-url", down]
        payload = json.dumps({"hook_event_name": "SessionStart", "session_id": "b-1", "cwd": "/"})
        hooked = wall_times(hook, env, runs, payload)
        report("hook SessionStart, server down, 10,000 pending", hooked, floor)
        with http_server(env, port):
            report("emit start, server up, 10,000 pending", wall_times(emit, env, runs), floor)
            left = Spool(here / "cli.db", max_pending=1_000_000)
            print(f"{'records still pending after those runs':<52}: {left.count(down)}")
            left.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    main(parser.parse_args().runs)
