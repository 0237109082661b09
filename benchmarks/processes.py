"""What the whole-process benchmarks share: timing a command, a free port, a server."""

from __future__ import annotations

import math
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..1) of the samples."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def wall_times(command: list[str], env: dict[str, str], runs: int, stdin: str = "") -> list[float]:
    """Seconds each of `runs` runs of `command` took, start to exit."""
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, check=False)
        samples.append(time.perf_counter() - began)
    return samples


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def http_server(env: dict[str, str], port: int, *flags: str) -> Iterator[str]:
    """`session-buddy serve --http` on `port` (with `flags`), answering /healthz; yields
    its base URL."""
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "session_buddy", "serve", "--http", "--port", str(port), *flags],
        env=env | {"SESSION_BUDDY_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        server.wait()


def start_arguments(component: str) -> dict[str, Any]:
    return {
        "event_version": "1.0",
        "event_id": str(uuid.uuid4()),
        "component_name": component,
        "shell_type": "BenchShell",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pid": None,
        "user": {"username": "bench", "home": "/home/bench"},
        "hostname": "bench-host",
        "environment": {"python_version": "3.11", "platform": "Linux", "cwd": "/srv"},
    }


class Server:
    """Tool calls over stateless JSON-RPC."""

    def __init__(self, base: str) -> None:
        self.client = httpx2.Client(base_url=base, timeout=30)
        self.headers = {"Accept": "application/json, text/event-stream"}

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        reply = self.client.post("/mcp", json=request, headers=self.headers)
        return dict(reply.json()["result"]["structuredContent"])

    def start(self, component: str) -> str:
        return str(self.call("track_session_start", start_arguments(component))["session_id"])

    def end(self, session_id: str, **metadata: Any) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.call(
            "track_session_end",
            {"session_id": session_id, "timestamp": now, "metadata": metadata},
        )


def tracked_p50(server: Server, calls: int) -> tuple[list[float], list[float]]:
    starts, ends = [], []
    for _ in range(calls):
        began = time.perf_counter()
        session = server.start("tracked")
        starts.append(time.perf_counter() - began)
        began = time.perf_counter()
        server.end(session, exit_code=0)
        ends.append(time.perf_counter() - began)
    return starts, ends


def print_p50_ratios(
    title: str, samples: dict[str, dict[str, list[float]]], baseline: str, other: str
) -> None:
    """The p50 of each call (start, end) in two conditions of one run, and their ratio."""
    print(title)
    for call in ("start", "end"):
        first = statistics.median(samples[baseline][call]) * 1000
        second = statistics.median(samples[other][call]) * 1000
        print(
            f"  {call:5} p50 {baseline} {first:6.3f} ms   {other} {second:6.3f} ms   "
            f"ratio {second / first:5.3f}"
        )
