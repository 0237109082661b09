"""Events per second through the HTTP server: SQLite with one server process, PostgreSQL
with one and with three server processes, measured in one run on this machine.

Servers run with --stateless (as behind a load balancer); clients send raw JSON-RPC
`tools/call` requests (start, then end) from CONCURRENCY tasks, spread round-robin over
the servers. Every event is durably committed before its answer.

    python benchmarks/bench_scaleout.py [--seconds 10] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx2
import psycopg

CONCURRENCY = 48
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-06-18",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(database_url: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env |= {"SESSION_BUDDY_DATABASE_URL": database_url, "SESSION_BUDDY_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "session_buddy",
            "serve",
            "--http",
            "--stateless",
            "--port",
            str(port),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx2.get(f"{base}/healthz", timeout=1)
                break
            except httpx2.TransportError:
                if process.poll() is not None:
                    raise RuntimeError("server exited") from None
                time.sleep(0.05)
        yield f"{base}/mcp"
    finally:
        process.terminate()
        process.wait()


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    schema = f"sb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def start_arguments(worker: int, n: int) -> dict[str, Any]:
    return {
        "event_version": "1.0",
        "event_id": str(uuid.uuid4()),
        "component_name": f"scale{worker}",
        "shell_type": "BenchShell",
        "timestamp": f"2026-05-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "pid": 1 + worker * 80_000 + n % 80_000,
        "user": {"username": "bench", "home": "/home/bench"},
        "hostname": "bench-host",
        "environment": {"python_version": "3.11", "platform": "Linux", "cwd": "/tmp"},
    }


async def drive(urls: list[str], seconds: float) -> float:
    """Events per second from CONCURRENCY workers doing start+end pairs."""
    events = 0
    targets = itertools.cycle(urls)
    async with httpx2.AsyncClient(headers=HEADERS, timeout=30) as client:

        async def worker(index: int) -> None:
            nonlocal events
            url = next(targets)
            for n in itertools.count():
                if time.perf_counter() >= deadline:
                    return
                started = await client.post(
                    url, json=call("track_session_start", start_arguments(index, n))
                )
                session_id = started.json()["result"]["structuredContent"]["session_id"]
                ended = await client.post(
                    url,
                    json=call(
                        "track_session_end",
                        {"session_id": session_id, "timestamp": "2026-06-01T00:00:00Z"},
                    ),
                )
                answer = ended.json()["result"]["structuredContent"]
                assert answer["status"] == "ended", answer
                events += 2

        deadline = time.perf_counter() + 1.0  # warm-up
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        events = 0
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        return events / (time.perf_counter() - began)


def measure(label: str, database_url: str, servers: int, seconds: float) -> float:
    with ExitStack() as stack:
        urls = [stack.enter_context(server(database_url)) for _ in range(servers)]
        rate = asyncio.run(drive(urls, seconds))
    print(f"{label:<28}: {rate:8.0f} events/s")
    return rate


def main(seconds: float, postgres_url: str) -> None:
    print(
        f"{CONCURRENCY} concurrent clients, start+end pairs, {seconds:.0f} s each, "
        f"{os.cpu_count()} cores (servers and clients share them)"
    )
    with tempfile.TemporaryDirectory(prefix="sb-bench-scale-") as folder:
        sqlite = measure("sqlite, 1 server", f"sqlite:///{folder}/s.db", 1, seconds)
    with postgres_schema(postgres_url) as url:
        one = measure("postgresql, 1 server", url, 1, seconds)
    with postgres_schema(postgres_url) as url:
        three = measure("postgresql, 3 servers", url, 3, seconds)
    print(
        f"postgresql 3 servers / 1 server: {three / one:.2f}x; "
        f"postgresql 1 server / sqlite: {one / sqlite:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "SESSION_BUDDY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    arguments = parser.parse_args()
    main(arguments.seconds, arguments.postgres_url)
