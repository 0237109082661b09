"""Alerts: how soon a notice reaches its receiver, and what rules cost tracking.

One server (`serve --http --stateless`, embedded SQLite, durable) and a JSON webhook in
this process, reached through an Apprise json:// URL. Prints:

- condition -> delivery at the receiver, p50/p90/max (target p50 <= 2 s): a crash (raised
  in the end's own transaction) and a wait for input with --for 0s (found by the
  server's once-a-second look), each timed from the reply that made it hold;
- track_session_start / track_session_end p50 with no rules and with 10 rules active,
  in alternating blocks of the same run (target: within 5 %), over HTTP and in one
  process beside the alert worker.

    python benchmarks/bench_alerts.py [--alerts 30] [--blocks 6] [--calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from processes import (
    Server,
    free_port,
    http_server,
    percentile,
    print_p50_ratios,
    start_arguments,
    tracked_p50,
)


class Webhook:
    """A JSON webhook that notes when each notice arrived, by title."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.perf_counter()
                self.send_response(200)
                self.end_headers()
                with webhook.changed:
                    webhook.arrived.setdefault(body["title"], now)
                    webhook.changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, title: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while title not in self.arrived:
                if not self.changed.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"no notice {title!r} within {timeout} s")
            return self.arrived[title]


def delivery_latency(server: Server, webhook: Webhook, rounds: int) -> dict[str, list[float]]:
    server.call(
        "add_alert_rule",
        {
            "name": "crash",
            "condition": "crashed",
            "component_name": "late",
            "channels": [webhook.url],
        },
    )
    server.call(
        "add_alert_rule",
        {
            "name": "wait",
            "condition": "waiting",
            "for_seconds": 0,
            "component_name": "waits",
            "channels": [webhook.url],
        },
    )
    seconds: dict[str, list[float]] = {"crashed": [], "waiting": []}
    for _ in range(rounds):
        session = server.start("late")
        server.end(session, exit_code=1)
        held = time.perf_counter()
        seconds["crashed"].append(webhook.wait(f"session-buddy: {session} crashed") - held)
        session = server.start("waits")
        server.call(
            "track_session_heartbeat", {"session_id": session, "activity": "waiting_for_input"}
        )
        held = time.perf_counter()
        title = f"session-buddy: {session} is waiting for input"
        seconds["waiting"].append(webhook.wait(title) - held)
        server.call("track_session_heartbeat", {"session_id": session, "activity": "working"})
    for name in ("crash", "wait"):
        server.call("remove_alert_rule", {"name": name})
    return seconds


TEN_RULES = [
    {"condition": "waiting", "for_seconds": 60},
    {"condition": "waiting", "for_seconds": 300, "hostname": "bench-host"},
    {"condition": "failing"},
    {"condition": "failing", "cwd_prefix": "/srv"},
    {"condition": "crashed"},
    {"condition": "crashed", "username": "bench"},
    {"condition": "abandoned"},
    {"condition": "stuck"},
    {"condition": "stuck", "factor": 2},
    {"condition": "crash-rate", "below": 50},
]


def rules_cost(server: Server, webhook: Webhook, blocks: int, calls: int) -> dict[str, Any]:
    """Start and end latency without rules and with 10, in alternating blocks."""
    samples: dict[str, dict[str, list[float]]] = {
        "none": {"start": [], "end": []},
        "ten": {"start": [], "end": []},
    }
    tracked_p50(server, calls // 2)  # warm up
    for block in range(blocks * 2):
        with_rules = block % 2 == 1
        for number, rule in enumerate(TEN_RULES):
            if with_rules:
                arguments = rule | {"name": f"r{number}", "channels": [webhook.url]}
                server.call("add_alert_rule", arguments)
        time.sleep(1.2)  # the server has read the rules
        starts, ends = tracked_p50(server, calls)
        kept = samples["ten" if with_rules else "none"]
        kept["start"] += starts
        kept["end"] += ends
        if with_rules:
            for number in range(len(TEN_RULES)):
                server.call("remove_alert_rule", {"name": f"r{number}"})
    return samples


async def in_process(folder: str, blocks: int, calls: int) -> dict[str, dict[str, list[float]]]:
    """The same, in one process (the store, the service and the alert worker on one
    event loop): a start costs ~0.5 ms here, so the rules' share shows more."""
    from session_buddy.app.alerting import AlertWorker
    from session_buddy.app.service import SessionService
    from session_buddy.core import SessionLifecycleManager, alerts

    samples: dict[str, dict[str, list[float]]] = {
        "none": {"start": [], "end": []},
        "ten": {"start": [], "end": []},
    }
    url = f"sqlite:///{Path(folder) / 'in-process.db'}"
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        worker = asyncio.create_task(AlertWorker(manager.store, manager.clock).run())
        rules = [
            alerts.AlertRule(name=f"r{n}", channels=("json://127.0.0.1:9/x",), **rule)
            for n, rule in enumerate(TEN_RULES)
        ]
        for block in range(blocks * 2 + 1):
            with_rules = block % 2 == 1
            for rule in rules if with_rules else ():
                await manager.store.write(lambda tx, rule=rule: alerts.save_rule(tx, rule))
            await asyncio.sleep(1.2)
            for _ in range(calls):
                began = time.perf_counter()
                started = await service.start(start_arguments("tracked"))
                middle = time.perf_counter()
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                await service.end({"session_id": started.session_id, "timestamp": now})
                if block:  # the first block warms up
                    kept = samples["ten" if with_rules else "none"]
                    kept["start"].append(middle - began)
                    kept["end"].append(time.perf_counter() - middle)
            for rule in rules if with_rules else ():
                await manager.store.write(
                    lambda tx, rule=rule: alerts.remove_rule(tx, rule.name, manager.clock())
                )
        worker.cancel()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=30, help="notices timed per condition")
    parser.add_argument("--blocks", type=int, default=6, help="blocks of each kind")
    parser.add_argument("--calls", type=int, default=100, help="start+end pairs per block")
    options = parser.parse_args()
    webhook = Webhook()
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env["SESSION_BUDDY_DATABASE_URL"] = f"sqlite:///{Path(folder) / 'bench.db'}"
        env["SESSION_BUDDY_ALERT_RATE"] = "10000"
        with http_server(env, free_port(), "--stateless") as base:
            server = Server(base)
            latency = delivery_latency(server, webhook, options.alerts)
            cost = rules_cost(server, webhook, options.blocks, options.calls)
    print(f"condition -> delivery at the receiver ({options.alerts} each; target p50 <= 2 s)")
    for condition, seconds in latency.items():
        print(
            f"  {condition:8} p50 {statistics.median(seconds) * 1000:7.1f} ms   "
            f"p90 {percentile(seconds, 0.9) * 1000:7.1f} ms   max {max(seconds) * 1000:7.1f} ms"
        )
    pairs = options.blocks * options.calls
    print_p50_ratios(
        f"tracked events over HTTP, {pairs} of each per setup, alternating blocks "
        "(target: within 5 %)",
        cost,
        "none",
        "ten",
    )
    with tempfile.TemporaryDirectory() as folder:
        local = asyncio.run(in_process(folder, options.blocks, options.calls))
    print_p50_ratios(f"the same in one process, {pairs} of each per setup", local, "none", "ten")


if __name__ == "__main__":
    sys.exit(main())
