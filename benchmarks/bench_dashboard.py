"""Dashboard pages over a big store: server time (the `Server-Timing` header each page
sends) p50/p95 of `/` and of a filtered `/sessions` view with N stored sessions (default
1,000,000, spread over the past year, as a store that has lived that long holds them),
beside the p50 of `/healthz` (client-measured, so an upper bound) in the same run.

    python benchmarks/bench_dashboard.py [--sessions 1000000] [--requests 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx2

from processes import free_port, http_server, percentile
from stores import create, fill

YEAR_US = 365 * 86_400_000_000


def server_ms(client: httpx2.Client, url: str) -> float:
    answer = client.get(url)
    answer.raise_for_status()
    timing = answer.headers["server-timing"]  # app;dur=12.34
    return float(timing.split("dur=")[1])


def wall_ms(client: httpx2.Client, url: str) -> float:
    began = time.perf_counter()
    client.get(url).raise_for_status()
    return (time.perf_counter() - began) * 1000


def report(name: str, samples: list[float], floor: float) -> None:
    p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
    print(f"{name:<56}: p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  = {p50 / floor:5.1f} x /healthz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sb-bench-dashboard-") as folder:
        path = Path(folder) / "sessions.db"
        url = create(path)
        now_us = int(time.time() * 1_000_000)
        spacing = YEAR_US // args.sessions
        fill(path, args.sessions, first_start_us=now_us - YEAR_US, spacing_us=spacing)
        print(f"{args.sessions:,} sessions over the past year (one every {spacing / 1e6:.0f} s)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env["SESSION_BUDDY_DATABASE_URL"] = url
        with http_server(env, free_port()) as base, httpx2.Client(timeout=30) as client:
            paths = [
                "/",
                "/?window=7d",
                "/?window=30d",
                "/?window=7d&component_name=component-3",
                "/sessions?status=crashed",
                "/sessions?component_name=component-3",
                # Two filters that no session matches together: the worst case.
                "/sessions?component_name=component-3&status=crashed",
                # Every session has the one user: the host's index is the one to walk.
                "/sessions?hostname=host-3&username=bench&status=crashed",
            ]
            views = {path: f"{base}{path}" for path in paths}
            for target in [f"{base}/healthz", *views.values()]:  # warm caches and pools
                for _ in range(5):
                    client.get(target)
            floor = statistics.median(
                wall_ms(client, f"{base}/healthz") for _ in range(args.requests)
            )
            print(f"{'GET /healthz (floor, wall)':<56}: p50 {floor:7.2f} ms")
            for name, target in views.items():
                report(name, [server_ms(client, target) for _ in range(args.requests)], floor)


if __name__ == "__main__":
    main()
