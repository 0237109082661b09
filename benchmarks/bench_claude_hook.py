"""The Claude Code hook as Claude Code runs it: wall time of `session-buddy hook
claude-code` (p50/p95 over N runs) for SessionStart and Stop, against the local store
(through the hook relay, and without it) and against a server, beside a bare
`python -c pass`; and `POST /hooks/claude-code` latency
beside `/healthz` on the same server, all in one run.

Usage: python benchmarks/bench_claude_hook.py [--runs 30]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx2

import session_buddy
from processes import free_port, http_server, percentile, wall_times

CLAUDE_ID = "3f1c2a9e-7b4d-4e8a-9c1f-2d6b8e0a5c47"


def payload(event: str, **extra: str) -> str:
    body = {"session_id": CLAUDE_ID, "cwd": "/srv/app", "hook_event_name": event} | extra
    return json.dumps(body)


def report(name: str, samples: list[float], floor: float | None) -> None:
    p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
    ratio = f"  = {p50 / floor:5.1f} x the floor (p50)" if floor else ""
    print(f"{name:<44}: p50 {p50 * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms{ratio}")


def main(runs: int) -> None:
    # As `claude-code install` does: with PYTHONDONTWRITEBYTECODE set, every hook run
    # would compile the modules it loads again.
    compileall.compile_dir(str(Path(session_buddy.__file__).parent), quiet=2)
    with tempfile.TemporaryDirectory(prefix="sb-bench-hook-") as folder:
        here = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env |= {
            "SESSION_BUDDY_DATABASE_URL": f"sqlite:///{here / 'sessions.db'}",
            "SESSION_BUDDY_SPOOL": str(here / "spool.db"),
        }
        floor_samples = wall_times([sys.executable, "-c", "pass"], env, runs)
        floor = percentile(floor_samples, 0.5)
        report("python -c pass (floor)", floor_samples, None)
        # The installed command, as Claude Code runs it (`python -m` would add runpy).
        command = Path(sys.executable).with_name("session-buddy")
        hook = [str(command), "hook", "claude-code"]
        start, stop = payload("SessionStart", source="startup"), payload("Stop")
        report("hook SessionStart, local store", wall_times(hook, env, runs, start), floor)
        report("hook Stop, local store", wall_times(hook, env, runs, stop), floor)
        alone = env | {"SESSION_BUDDY_RELAY_IDLE": "0"}  # each hook writes the store itself
        report("hook Stop, local store, no relay", wall_times(hook, alone, runs, stop), floor)

        with http_server(env, free_port()) as base:
            remote = [*hook, "--server-url", f"{base}/mcp"]
            report("hook SessionStart, server", wall_times(remote, env, runs, start), floor)
            report("hook Stop, server", wall_times(remote, env, runs, stop), floor)
            report("hook Stop, server, no relay", wall_times(remote, alone, runs, stop), floor)
            with httpx2.Client(base_url=base) as client:
                health, endpoint = [], []
                for _ in range(max(runs, 200)):  # interleaved: noise hits both alike
                    began = time.perf_counter()
                    client.get("/healthz")
                    health.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    client.post("/hooks/claude-code", content=stop)
                    endpoint.append(time.perf_counter() - began)
            health_p50 = percentile(health, 0.5)
            report("GET /healthz (floor)", health, None)
            report("POST /hooks/claude-code (Stop)", endpoint, health_p50)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    main(parser.parse_args().runs)
