"""MCP latency, cold start and memory, per transport, against floors from the same run.

For stdio and for streamable HTTP (stateful, then stateless) this starts one server
(embedded SQLite, durable) and prints: cold start to a completed initialize, the first
tool call after it, p50/p99 of track_session_start, track_session_end, health_check and
a protocol ping (the floors), and the hot-path targets of DESIGN §9: a start's (an
end's) p50 beyond health_check's against a bare durable one-row SQLite commit on the
same disk at the same pace (+ 0.25 ms), and against a ping (x 2); then the server's RSS
after 10,000 sessions. Last, with the database's fsync slowed to 800 ms (a preloaded
shim, tests/sick_peers.py), how long /healthz and a page take while a write is pending
(target: 100 ms).

    python benchmarks/bench_mcp.py [--calls 300] [--sessions 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import jsonschema  # noqa: F401  (the client SDK imports it on its first call_tool; not server time)
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from processes import percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sick_peers import slow_fsync_library

SERVER = [sys.executable, "-m", "session_buddy", "serve"]
# The initialize handshake, as existing session-buddy clients speak it; `ping` is a
# protocol request there (the 2026-07-28 protocol has no ping).
MODE = "legacy"


def server_env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env["SESSION_BUDDY_DATABASE_URL"] = f"sqlite:///{database}"
    env.setdefault("SESSION_BUDDY_LOG_LEVEL", os.environ.get("BENCH_LOG_LEVEL", "INFO"))
    return env


def start_arguments(n: int) -> dict[str, Any]:
    return {
        "event_version": "1.0",
        "event_id": str(uuid.uuid4()),
        "component_name": "bench",
        "shell_type": "BenchShell",
        "timestamp": f"2026-03-{1 + n // 86400 % 28:02d}T{n // 3600 % 24:02d}:"
        f"{n // 60 % 60:02d}:{n % 60:02d}Z",
        "pid": 1 + n % 4_000_000,
        "user": {"username": "bench", "home": "/home/bench"},
        "hostname": "bench-host",
        "environment": {"python_version": "3.11", "platform": "Linux", "cwd": "/tmp"},
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_server_pid() -> int:
    """The stdio server the client spawned (a child of this process)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[1] == me and b"session_buddy" in cmdline:
            return int(entry.name)
    raise RuntimeError("stdio server process not found")


def bare_commit(path: Path) -> Callable[[], float]:
    """One durable single-row commit on a bare sqlite3 WAL file (synchronous=FULL), in
    ms: what a start or end must pay beyond health_check on this disk at this pace."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")

    def commit() -> float:
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 200,))
        began = time.perf_counter()
        connection.execute("COMMIT")
        return (time.perf_counter() - began) * 1000

    return commit


async def measure(
    client: Client, calls: int, sessions: int, pid: Callable[[], int], commit: Callable[[], float]
) -> dict[str, Any]:
    """Latency samples per call kind, interleaved (ping, health_check, start, end, ...)
    so that machine noise hits the floors and the measured calls alike."""

    async def timed_call(call: Awaitable[Any]) -> tuple[float, Any]:
        began = time.perf_counter()
        result = await call
        return (time.perf_counter() - began) * 1000, result

    for _ in range(20):  # warm-up
        await client.send_ping()
        await client.call_tool("health_check", {})
    figures: dict[str, Any] = {
        "ping": [],
        "health_check": [],
        "track_session_start": [],
        "track_session_end": [],
        "bare durable commit": [],
    }
    for n in range(calls):
        figures["ping"].append((await timed_call(client.send_ping()))[0])
        figures["health_check"].append((await timed_call(client.call_tool("health_check", {})))[0])
        took, started = await timed_call(
            client.call_tool("track_session_start", start_arguments(n))
        )
        figures["track_session_start"].append(took)
        end = {
            "session_id": started.structured_content["session_id"],
            "timestamp": "2026-04-01T00:00:00Z",
            "metadata": {"exit_code": 0},
        }
        figures["track_session_end"].append(
            (await timed_call(client.call_tool("track_session_end", end)))[0]
        )
    # Apart from the calls (its fsync would slow the server's next one), at their pace.
    pace = statistics.median(figures["track_session_start"] + figures["track_session_end"])
    for _ in range(calls):
        figures["bare durable commit"].append(commit())
        time.sleep(pace / 1000)
    for n in range(calls, sessions):
        await client.call_tool("track_session_start", start_arguments(n))
    figures["rss_mb"] = rss_mb(pid())
    return figures


def report(name: str, cold_ms: float, first_ms: float, figures: dict[str, Any]) -> None:
    p50 = {k: statistics.median(v) for k, v in figures.items() if isinstance(v, list)}
    print(f"\n== {name} ==")
    print(f"cold start to initialize : {cold_ms:8.1f} ms   (target <= 1200 ms)")
    print(f"first tool call          : {first_ms:8.1f} ms   (target <= 50 ms)")
    for key in p50:
        print(f"{key:<25}: p50 {p50[key]:6.2f} ms   p99 {percentile(figures[key], 0.99):6.2f} ms")
    commit = p50["bare durable commit"]
    for key in ("track_session_start", "track_session_end"):
        beyond = p50[key] - p50["health_check"]
        verdict = "met" if beyond <= commit + 0.25 else "NOT met"
        print(
            f"{key:<25}: {beyond:.2f} ms beyond health_check, a bare durable commit "
            f"{commit:.2f} ms + 0.25 ({verdict}); {p50[key] / p50['ping']:.2f} x ping "
            "(target <= 2)"
        )
    print(f"server RSS after sessions: {figures['rss_mb']:8.1f} MB   (target <= 80 MB)")


async def bench_stdio(folder: Path, calls: int, sessions: int) -> None:
    params = StdioServerParameters(
        command=SERVER[0], args=SERVER[1:], env=server_env(folder / "stdio.db")
    )
    began = time.perf_counter()
    async with Client(params, mode=MODE) as client:
        cold = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        await client.call_tool("health_check", {})
        first = (time.perf_counter() - began) * 1000
        figures = await measure(
            client, calls, sessions, child_server_pid, bare_commit(folder / "stdio-floor.db")
        )
    report("stdio", cold, first, figures)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def bench_http(folder: Path, calls: int, sessions: int, *, stateless: bool) -> None:
    port = free_port()
    mode = "stateless" if stateless else "stateful"
    began = time.perf_counter()
    process = subprocess.Popen(
        [*SERVER, "--http", "--port", str(port), *(["--stateless"] if stateless else [])],
        env=server_env(folder / f"http-{mode}.db"),
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        while True:
            try:
                async with Client(
                    streamable_http_client(url, http_client=httpx2.AsyncClient()), mode=MODE
                ) as c:
                    cold = (time.perf_counter() - began) * 1000
                    began = time.perf_counter()
                    await c.call_tool("health_check", {})
                    first = (time.perf_counter() - began) * 1000
                    figures = await measure(
                        c,
                        calls,
                        sessions,
                        lambda: process.pid,
                        bare_commit(folder / f"http-{mode}-floor.db"),
                    )
                break
            except Exception:
                if process.poll() is not None or time.perf_counter() - began > 30:
                    raise
                await asyncio.sleep(0.01)
    finally:
        process.terminate()
        process.wait()
    report(f"streamable HTTP, {mode} (JSON responses)", cold, first, figures)


async def bench_fsync_stall(folder: Path, stall_ms: int = 800, samples: int = 10) -> None:
    """/healthz and a page, each asked while a start waits for its (slowed) fsync."""
    library = slow_fsync_library(folder)
    if library is None:
        print("\n== fsync stall == skipped: no C compiler for the shim")
        return
    switch = folder / "fsync-ms"
    env = server_env(folder / "stall.db") | {
        "LD_PRELOAD": str(library),
        "SLOW_FSYNC_SWITCH": str(switch),
    }
    port = free_port()
    process = subprocess.Popen(
        [*SERVER, "--http", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    taken: dict[str, list[float]] = {"/healthz": [], "/sessions": [], "the start itself": []}
    try:
        async with httpx2.AsyncClient(base_url=base, timeout=30) as web:
            while True:
                try:
                    await web.get("/healthz")
                    break
                except httpx2.TransportError:
                    await asyncio.sleep(0.05)
            async with Client(
                streamable_http_client(f"{base}/mcp", http_client=httpx2.AsyncClient()), mode=MODE
            ) as client:
                switch.write_text(str(stall_ms))
                for n in range(samples):
                    sent = time.perf_counter()
                    write = asyncio.create_task(
                        client.call_tool("track_session_start", start_arguments(n))
                    )
                    await asyncio.sleep(0.1)  # the start is in its fsync now
                    for path in ("/healthz", "/sessions"):
                        began = time.perf_counter()
                        await web.get(path)
                        taken[path].append((time.perf_counter() - began) * 1000)
                    await write
                    taken["the start itself"].append((time.perf_counter() - sent) * 1000)
                switch.unlink()
    finally:
        process.terminate()
        process.wait()
    print(f"\n== fsync stalled at {stall_ms} ms, while a start waits for it ==")
    for path, seen in taken.items():
        target = "" if path.startswith("the") else "; target <= 100 ms"
        print(
            f"{path:<16}: p50 {statistics.median(seen):6.1f} ms  max {max(seen):6.1f} ms  "
            f"({samples} samples{target})"
        )


async def main(calls: int, sessions: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-bench-mcp-") as folder:
        await bench_stdio(Path(folder), calls, sessions)
        await bench_http(Path(folder), calls, sessions, stateless=False)
        await bench_http(Path(folder), calls, sessions, stateless=True)
        await bench_fsync_stall(Path(folder))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=10_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.calls, arguments.sessions))
