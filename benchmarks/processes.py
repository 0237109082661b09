"""What the whole-process benchmarks share: timing a command, a free port, a server."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


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
