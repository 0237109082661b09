"""Retention and export at scale, on one SQLite store of N finished sessions of 2020
(default 1,000,000, two events each):

- `session-buddy sessions export` of every session: wall time and peak RSS;
- 16 writers (start + end each, in process) for a while alone, then while `prune`
  deletes every old session: the writers' p50/p99 latency in both phases, prune rows/s,
  and the longest write-lock hold (BEGIN IMMEDIATE to COMMIT, from the writer's trace);
- the same across processes, as people run it: 8 MCP clients writing to a server
  (`serve --http`) alone, then while `session-buddy prune` runs in its own process on the
  same file: their p50/p99 and events/s in both phases (target: p99 under 100 ms).

    python benchmarks/bench_retention.py [--sessions 1000000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from mcp import Client

from processes import percentile
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager
from session_buddy.timestamps import format_micros, parse_timestamp, to_micros
from stores import create, fill

WRITERS = 16
OLD_START_US = 1_600_000_000_000_000  # September 2020: long before any cutoff
CUTOFF = "2021-01-01T00:00:00Z"


def export_peak(url: str) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, lines) of exporting every session as NDJSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env["SESSION_BUDDY_DATABASE_URL"] = url
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy", "sessions", "export", "--format", "ndjson"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    took = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return took, peak_kib / 1024, done.stdout.count(b"\n")


LIVE_START_US = 1_790_000_000_000_000  # October 2026
_sent = itertools.count()


def event(number: int) -> dict[str, Any]:
    """A live start; each a second apart, so session ids never collide."""
    started = format_micros(LIVE_START_US + next(_sent) * 1_000_000)
    return {
        "event_version": "1.0",
        "event_id": str(uuid.uuid4()),
        "component_name": "live",
        "shell_type": "Bench",
        "timestamp": started,
        "pid": 100_000 + number,
        "user": {"username": "bench", "home": "/home/bench"},
        "hostname": "bench-writer",
        "environment": {"python_version": "3.11", "platform": "Linux", "cwd": "/srv"},
    }


async def writer(
    service: SessionService, number: int, stop: asyncio.Event, took: list[float]
) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        event_sent = event(number)
        started = await service.start(event_sent)
        end = {"session_id": started.session_id, "timestamp": ended_after(event_sent)}
        await service.end(end)
        took.append((time.perf_counter() - began) / 2)  # per event


async def phase(
    service: SessionService, seconds: float | None, work: Any = None
) -> tuple[list[float], Any]:
    """Writers for `seconds`, or for as long as `work` runs; their latencies and its result."""
    stop, took = asyncio.Event(), []
    writers = [asyncio.create_task(writer(service, n, stop, took)) for n in range(WRITERS)]
    result = None
    if work is not None:
        result = await work
    else:
        await asyncio.sleep(seconds or 0)
    stop.set()
    await asyncio.gather(*writers)
    return took, result


def ended_after(start: dict[str, Any]) -> str:
    """A minute after the start event's time."""
    return str(format_micros(to_micros(parse_timestamp(start["timestamp"])) + 60_000_000))


def quantile(samples: list[float], q: float) -> float:
    """In milliseconds."""
    return percentile(samples, q) * 1000


async def run(url: str, seconds: float) -> None:
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        holds: list[float] = []
        opened: list[float] = []

        def trace(sql: str) -> None:
            if sql == "BEGIN IMMEDIATE":
                opened.append(time.perf_counter())
            elif sql in ("COMMIT", "ROLLBACK") and opened:
                holds.append(time.perf_counter() - opened.pop())

        manager.store._writer_connection.set_trace_callback(trace)  # type: ignore[attr-defined]
        alone, _ = await phase(service, seconds)
        alone_holds, holds[:] = list(holds), []
        busy, report = await phase(service, None, manager.prune(CUTOFF))
        print(
            f"writers alone ({WRITERS})        : p50 {quantile(alone, 0.5):6.2f} ms  "
            f"p99 {quantile(alone, 0.99):6.2f} ms  ({len(alone)} events; longest "
            f"transaction {max(alone_holds) * 1000:.1f} ms)"
        )
        ratio = quantile(busy, 0.99) / quantile(alone, 0.99)
        print(
            f"writers while pruning      : p50 {quantile(busy, 0.5):6.2f} ms  "
            f"p99 {quantile(busy, 0.99):6.2f} ms  = {ratio:.2f} x alone (p99)"
        )
        print(
            f"prune                      : {report.sessions} sessions + {report.events} events "
            f"in {report.seconds:.1f} s = {report.sessions / report.seconds:,.0f} sessions/s, "
            f"{report.batches} batches"
        )
        print(
            f"longest write-lock hold    : {max(holds) * 1000:.1f} ms while pruning "
            f"(prune's own longest batch {report.longest_batch_ms:.1f} ms, target ~50); "
            f"{report.pages_returned:,} pages given back"
        )


async def mcp_writer(url: str, number: int, stop: asyncio.Event, took: list[float]) -> None:
    async with Client(url) as client:
        while not stop.is_set():
            began = time.perf_counter()
            sent = event(number)
            started = await client.call_tool("track_session_start", sent)
            end = {
                "session_id": started.structured_content["session_id"],
                "timestamp": ended_after(sent),
            }
            await client.call_tool("track_session_end", end)
            took.append((time.perf_counter() - began) / 2)


async def across_processes(database_url: str, seconds: float, writers: int = 8) -> None:
    """Writers through a server, alone and then while `session-buddy prune` runs in
    another process on the same file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env |= {"SESSION_BUDDY_DATABASE_URL": database_url, "SESSION_BUDDY_LOG_LEVEL": "WARNING"}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "session_buddy", "serve", "--http", "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_for_port(port)
        for name, pruning in (("alone", False), ("while prune runs", True)):
            stop, took = asyncio.Event(), []
            tasks = [asyncio.create_task(mcp_writer(url, n, stop, took)) for n in range(writers)]
            began = time.perf_counter()
            if pruning:
                prune = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "session_buddy", "prune", "--before", CUTOFF,
                    env=env, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                said, _ = await prune.communicate()
            else:
                await asyncio.sleep(seconds)
            spent = time.perf_counter() - began
            stop.set()
            await asyncio.gather(*tasks)
            print(
                f"{writers} MCP writers {name:<17}: p50 {quantile(took, 0.5):6.2f} ms  "
                f"p99 {quantile(took, 0.99):7.2f} ms  (target < 100)  "
                f"{len(took) / spent:,.0f} events/s over {spent:.1f} s"
            )
            if pruning:
                print(f"  prune said: {said.decode().strip().splitlines()[0]}")
    finally:
        server.terminate()
        server.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only-across", action="store_true", help="Skip the in-process runs.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sb-bench-retention-") as folder:
        if args.only_across:
            path = Path(folder) / "across.db"
            create(path)
            fill(path, args.sessions, first_start_us=OLD_START_US, spacing_us=1_000_000)
            asyncio.run(across_processes(f"sqlite:///{path}", args.seconds))
            return
        path = Path(folder) / "sessions.db"
        url = f"sqlite:///{path}"
        create(path)
        began = time.perf_counter()
        fill(path, args.sessions, first_start_us=OLD_START_US, spacing_us=1_000_000)
        print(
            f"filled {args.sessions:,} sessions (+{2 * args.sessions:,} events) in "
            f"{time.perf_counter() - began:.1f} s; file {path.stat().st_size / 2**20:,.0f} MiB"
        )
        took, peak, lines = export_peak(url)
        print(
            f"export ndjson              : {lines:,} sessions in {took:.1f} s = "
            f"{lines / took:,.0f}/s, peak RSS {peak:.0f} MiB"
        )
        asyncio.run(run(url, args.seconds))
        print(f"file after prune           : {path.stat().st_size / 2**20:,.0f} MiB")
        across = Path(folder) / "across.db"
        create(across)
        fill(across, args.sessions, first_start_us=OLD_START_US, spacing_us=1_000_000)
        asyncio.run(across_processes(f"sqlite:///{across}", args.seconds))


if __name__ == "__main__":
    main()
