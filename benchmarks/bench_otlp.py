"""OTLP ingest: how many log records a second one server takes in, and what a steady
stream of them costs tracked events.

One server (`serve --http --stateless`, embedded SQLite, durable). The load is export
requests of --batch Claude Code `api_request` records (as Claude Code sends them, JSON,
spread over --sessions client sessions, half of them started), posted from other
processes over kept-alive connections. Prints:

- ingest at full speed from --senders processes for --seconds: log records accepted per
  second (target >= 5,000), and how many requests were asked to retry (429);
- track_session_start / track_session_end p50, idle and while a stream paced at --rate
  records/s arrives, in alternating blocks of the same run (target: within 10 % of idle).

    python benchmarks/bench_otlp.py [--batch 500] [--senders 2] [--seconds 10]
                                    [--rate 5000] [--blocks 4] [--calls 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from processes import (
    Server,
    free_port,
    http_server,
    print_p50_ratios,
    start_arguments,
    tracked_p50,
)

SESSION_ATTRIBUTES = {
    "user.id": "f" * 64,
    "terminal.type": "xterm",
    "event.name": "api_request",
    "model": "claude-opus-4-8",
    "input_tokens": 10,
    "output_tokens": 5,
    "cache_read_tokens": 2000,
    "cache_creation_tokens": 30,
    "cost_usd": 0.000175,
    "duration_ms": 32,
    "speed": "normal",
    "query_source": "sdk",
}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def export_request(sessions: list[str], batch: int) -> bytes:
    now = time.time_ns()
    records = []
    for number in range(batch):
        values = SESSION_ATTRIBUTES | {
            "session.id": sessions[number % len(sessions)],
            "event.sequence": number,
            "prompt.id": str(uuid.uuid4()),
        }
        records.append(
            {
                "timeUnixNano": str(now + number),
                "body": {"stringValue": "claude_code.api_request"},
                "attributes": [{"key": k, "value": _value(v)} for k, v in values.items()],
            }
        )
    scope = {"scope": {"name": "com.anthropic.claude_code.events"}, "logRecords": records}
    return json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [scope]}]}).encode()


def send(base: str, body: bytes, batch: int, seconds: float, rate: float) -> None:
    """Post `body` for `seconds`, at `rate` records/s (0: as fast as answered); print
    what happened as one JSON line."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    began = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - began) < seconds:
        if rate:
            due = sent * batch / rate
            if due > elapsed:
                time.sleep(due - elapsed)
        connection.request("POST", "/v1/logs", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        sent += 1
    print(json.dumps({"seconds": time.perf_counter() - began, "statuses": statuses}))


def senders(base: str, count: int, args: argparse.Namespace, rate: float) -> list[Any]:
    command = [sys.executable, __file__, "--send", base]
    command += ["--batch", str(args.batch), "--sessions", str(args.sessions)]
    command += ["--seconds", str(args.seconds), "--rate", str(rate)]
    return [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]


def finished(processes: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(process.communicate()[0]) for process in processes]


def ingest_rate(base: str, args: argparse.Namespace) -> dict[str, float]:
    reports = finished(senders(base, args.senders, args, 0))
    accepted = sum(r["statuses"].get("200", 0) for r in reports) * args.batch
    retried = sum(r["statuses"].get("429", 0) for r in reports)
    other = sum(n for r in reports for s, n in r["statuses"].items() if s not in ("200", "429"))
    seconds = max(r["seconds"] for r in reports)
    return {"records_per_s": accepted / seconds, "retried": retried, "other": other}


def tracked_under_stream(
    server: Server, base: str, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """Start and end latency idle and beside a paced stream, in alternating blocks."""
    samples = {"idle": {"start": [], "end": []}, "stream": {"start": [], "end": []}}
    tracked_p50(server, args.calls // 2)  # warm up
    for block in range(args.blocks * 2):
        streaming = block % 2 == 1
        stream = senders(base, 1, args, args.rate) if streaming else []
        if streaming:
            time.sleep(0.5)  # the stream runs
        starts, ends = tracked_p50(server, args.calls)
        kept = samples["stream" if streaming else "idle"]
        kept["start"] += starts
        kept["end"] += ends
        for process in stream:
            process.kill()
            process.wait()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--send", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sessions = [f"bench-{number}-{uuid.uuid4()}" for number in range(args.sessions)]
    if args.send:
        send(args.send, export_request(sessions, args.batch), args.batch, args.seconds, args.rate)
        return
    with tempfile.TemporaryDirectory() as folder:
        env = os.environ | {"SESSION_BUDDY_DATABASE_URL": f"sqlite:///{Path(folder) / 'b.db'}"}
        with http_server(env, free_port(), "--stateless") as base:
            server = Server(base)
            for claude_session in sessions[: len(sessions) // 2]:
                arguments = start_arguments("claude-code")
                server.call(
                    "track_session_start", arguments | {"metadata": {"external_id": claude_session}}
                )
            size = len(export_request(sessions, args.batch))
            print(f"export request: {args.batch} records, {size / 1024:.0f} KiB of JSON")
            rate = ingest_rate(base, args)
            print(
                f"ingest, {args.senders} senders, {args.seconds:g} s: "
                f"{rate['records_per_s']:,.0f} log records/s (target >= 5,000); "
                f"{rate['retried']:.0f} requests asked to retry (429), {rate['other']:.0f} other"
            )
            samples = tracked_under_stream(server, base, args)
    print_p50_ratios(
        f"tracked events, {args.blocks * args.calls} of each: idle, and beside a stream of "
        f"{args.rate:,.0f} log records/s in alternating blocks (target: within 10 %)",
        samples,
        "idle",
        "stream",
    )


if __name__ == "__main__":
    main()
