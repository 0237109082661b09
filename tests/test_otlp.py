"""The OTLP/HTTP receiver of a real server (`serve --http`) on a real SQLite file and a
real PostgreSQL schema: usage per session from what an agent's exporter sends, records
that come before the session's start, and the answers the OTLP specification asks for."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from conftest import fill, start_payload
from mcp_helpers import call, http_client, http_server, mint_token, run_cli, server_env
from otlp_requests import SECOND_NS, active_time, log_record, logs, post, post_json, protobuf

NOW_NS = time.time_ns()


@pytest.fixture
def server(database_url: str) -> Iterator[str]:
    with http_server(database_url) as (base, _):
        yield base


def api_request(session: str, at: int, **given: Any) -> dict[str, Any]:
    values = {
        "session.id": session,
        "model": "claude-opus-4-8",
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 100,
        "cache_creation_tokens": 7,
        "cost_usd": 0.25,
        "duration_ms": 40,
    }
    return log_record("api_request", NOW_NS + at * SECOND_NS, **(values | given))


def first_batch(session: str) -> dict[str, Any]:
    return logs(
        [
            log_record("user_prompt", NOW_NS, **{"session.id": session, "prompt_length": "5"}),
            api_request(session, 1),
            api_request(session, 2, model="claude-haiku-4", cost_usd=0.5, input_tokens=30),
            log_record("tool_result", NOW_NS + 3, **{"session.id": session, "tool_name": "Bash"})
            | {"attributes": []},  # a record without a session.id: rejected
            log_record(
                "tool_result",
                NOW_NS + 3 * SECOND_NS,
                **{"session.id": session, "tool_name": "Bash", "success": "true"},
            ),
            log_record(
                "tool_result",
                NOW_NS + 4 * SECOND_NS,
                **{"session.id": session, "tool_name": "Edit", "success": "false"},
            ),
        ]
    )


def usage_of(database_url: str, session_id: str) -> dict[str, Any]:
    shown = json.loads(run_cli(database_url, "sessions", "show", session_id, "--json").stdout)
    return dict(shown["usage"])


async def start(base: str, claude_session: str) -> str:
    async with http_client(base) as client:
        started = await call(
            client,
            "track_session_start",
            start_payload(
                component_name="claude-code",
                timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW_NS / 1e9 - 60)),
                metadata={"external_id": claude_session},
            ),
        )
    return str(started["session_id"])


async def test_usage_sums_records_that_came_before_the_start_and_after(
    server: str, database_url: str
) -> None:
    claude_session = str(uuid.uuid4())
    status, answer = post_json(server, "/v1/logs", first_batch(claude_session))
    assert status == 200
    assert answer["partialSuccess"]["rejectedLogRecords"] == "1"
    assert "session.id" in answer["partialSuccess"]["errorMessage"]
    assert (
        post(server, "/v1/metrics", json.dumps(active_time(claude_session, 1.5, NOW_NS)).encode())[
            0
        ]
        == 200
    )

    session_id = await start(server, claude_session)  # the records waited for it

    later = logs(
        [
            api_request(claude_session, 10),
            log_record(
                "api_error",
                NOW_NS + 11 * SECOND_NS,
                **{"session.id": claude_session, "status_code": 429},
            ),
        ]
    )
    status, _, body = post(server, "/v1/logs", protobuf(later), "application/x-protobuf")
    assert (
        status == 200
        and ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records == 0
    )
    for seconds in (2.0, 4.5):  # a cumulative series: what counts is how much it grew
        document = active_time(claude_session, seconds, NOW_NS, cumulative=True, start_ns=NOW_NS)
        assert post(server, "/v1/metrics", protobuf(document), "application/x-protobuf")[0] == 200

    usage = usage_of(database_url, session_id)
    assert {name: usage[name] for name in ("api_requests", "api_errors", "tool_calls")} == {
        "api_requests": 3,
        "api_errors": 1,
        "tool_calls": 2,
    }
    assert (usage["input_tokens"], usage["output_tokens"]) == (10 + 30 + 10, 15)
    assert (usage["cache_read_tokens"], usage["cache_creation_tokens"]) == (300, 21)
    assert usage["tokens"] == 50 + 15 + 300 + 21
    assert usage["cost_usd"] == pytest.approx(1.0)
    assert (usage["tool_failures"], usage["prompts"]) == (1, 1)
    assert usage["active_seconds"] == pytest.approx(1.5 + 4.5)
    assert usage["models"] == [
        {"model": "claude-opus-4-8", "requests": 2, "cost_usd": pytest.approx(0.5)},
        {"model": "claude-haiku-4", "requests": 1, "cost_usd": pytest.approx(0.5)},
    ]
    assert usage["tools"] == [
        {"tool": "Bash", "calls": 1, "failures": 0},
        {"tool": "Edit", "calls": 1, "failures": 1},
    ]
    assert usage["errors"] == [{"error": "429", "count": 1}]

    listed = json.loads(run_cli(database_url, "sessions", "list", "--json").stdout)
    assert listed["sessions"][0]["usage"]["cost_usd"] == pytest.approx(1.0)
    table = run_cli(database_url, "sessions", "list", COLUMNS="200").stdout
    assert "$1.00" in table and "tokens" in table
    stats = json.loads(run_cli(database_url, "stats", "--by", "day", "--json").stdout)
    assert stats["groups"][0]["cost_usd"] == pytest.approx(1.0)
    assert stats["groups"][0]["input_tokens"] == 50
    shown = run_cli(database_url, "sessions", "show", session_id, COLUMNS="200").stdout
    assert "claude-opus-4-8 2× $0.50" in shown and "Edit 1× (1 failed)" in shown
    overview = httpx2.get(f"{server}/", timeout=10).text
    assert "Costliest sessions" in overview and session_id in overview and "$1.00" in overview
    listed_html = httpx2.get(f"{server}/sessions", timeout=10).text
    assert "<th>cost</th>" in listed_html and "$1.00" in listed_html
    detail = httpx2.get(f"{server}/sessions/{session_id}", timeout=10).text
    assert "claude-opus-4-8 2× $0.50" in detail and "429 1×" in detail
    scraped = httpx2.get(f"{server}/metrics", timeout=10).text
    assert 'session_buddy_agent_cost_usd_total{model="claude-haiku-4"} 0.5' in scraped
    assert 'session_buddy_otlp_records_total{outcome="rejected",signal="logs"} 1.0' in scraped


def test_a_resumed_session_gets_the_records_of_its_own_run(server: str, database_url: str) -> None:
    """Claude Code's --resume keeps its session id: records go to the run they came in."""
    claude_session = str(uuid.uuid4())
    hook = {"session_id": claude_session, "cwd": "/tmp", "transcript_path": "/tmp/t.jsonl"}
    env = {"SESSION_BUDDY_SERVER_URL": f"{server}/mcp"}

    def send(event: str, **extra: str) -> None:
        payload = json.dumps(hook | {"hook_event_name": event} | extra)
        done = run_hook(database_url, payload, env)
        assert done.returncode == 0, done.stderr

    send("SessionStart", source="startup")
    assert post_json(server, "/v1/logs", logs([api_request(claude_session, 0)]))[0] == 200
    send("SessionEnd", reason="other")
    time.sleep(0.01)
    send("SessionStart", source="resume")
    resumed_at = time.time_ns() + 1 * SECOND_NS
    late = logs([api_request(claude_session, 0) | {"timeUnixNano": str(resumed_at)}])
    assert post_json(server, "/v1/logs", late)[0] == 200
    listed = json.loads(run_cli(database_url, "sessions", "list", "--json").stdout)["sessions"]
    second, first = listed
    assert second["previous_session_id"] == first["session_id"]
    assert (first["usage"]["api_requests"], second["usage"]["api_requests"]) == (1, 1)


def run_hook(database_url: str, payload: str, env: dict[str, str]) -> Any:
    return subprocess.run(
        [str(Path(sys.executable).with_name("session-buddy")), "hook", "claude-code"],
        input=payload,
        env=server_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_requests_get_the_answers_otlp_names_and_lose_nothing(
    server: str, database_url: str
) -> None:
    claude_session = str(uuid.uuid4())
    document = logs([api_request(claude_session, 0)])
    assert post_json(server, "/v1/logs", document)[0] == 200

    status, answer = post_json(server, "/v1/logs", {"resourceLogs": "no"})
    assert status == 400 and answer["error_code"] == "invalid_argument"
    assert answer["code"] == 3 and "resourceLogs must be a list" in answer["message"]
    status, _, body = post(server, "/v1/logs", b"{not json", "application/json")
    assert status == 400 and b"not JSON" in body
    status, _, body = post(server, "/v1/logs", b"\xff\x00garbage", "application/x-protobuf")
    assert status == 400 and "not a protobuf" in Status.FromString(body).message
    status, _, body = post(server, "/v1/logs", b"{}", "text/plain")
    assert status == 415 and b"application/json" in body
    status, _, _ = post(server, "/v1/logs", b"{}", "application/json", **{"Content-Encoding": "br"})
    assert status == 415
    status, _, body = post(server, "/v1/logs", b"not gzip", **{"Content-Encoding": "gzip"})
    assert status == 400 and b"gzip" in body
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 KiB that inflate to 64 MiB
    status, _, body = post(server, "/v1/logs", bomb, **{"Content-Encoding": "gzip"})
    assert status == 413 and b"inflates past 8 MiB" in body
    status, _, body = post(server, "/v1/logs", b" " * (1024 * 1024 + 1))
    assert status == 413 and json.loads(body)["error_code"] == "payload_too_large"

    # Gzip over a chunked body, as OpenTelemetry's exporters send it: accepted.
    packed = gzip.compress(json.dumps(document).encode())
    chunks = iter([packed[:100], packed[100:]])
    status, _, _ = post(server, "/v1/logs", chunks, **{"Content-Encoding": "gzip"})
    assert status == 200
    waiting = json.loads(run_cli(database_url, "sessions", "list", "--json").stdout)
    assert waiting["sessions"] == []  # no session yet: the usage waits for its start


async def test_usage_waits_for_a_start_that_comes_later(server: str, database_url: str) -> None:
    claude_session = str(uuid.uuid4())
    document = logs([api_request(claude_session, 0), api_request(claude_session, 1)])
    assert post_json(server, "/v1/logs", document)[0] == 200
    session_id = await start(server, claude_session)
    assert usage_of(database_url, session_id)["api_requests"] == 2
    other = await start(server, str(uuid.uuid4()))
    shown = json.loads(run_cli(database_url, "sessions", "show", other, "--json").stdout)
    assert shown["usage"] is None


def test_a_token_without_write_scope_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'secured.db'}"
    secret = "s" * 40
    reader = mint_token(url, secret, "sessions:read")
    writer = mint_token(url, secret, "sessions:write")
    document = logs([api_request(str(uuid.uuid4()), 0)])
    with http_server(url, SESSION_BUDDY_SECRET=secret) as (base, _):
        assert post_json(base, "/v1/logs", document)[0] == 401
        status, answer = post_json(base, "/v1/logs", document, Authorization=f"Bearer {reader}")
        assert status == 403 and answer["error_code"] == "forbidden"
        assert post_json(base, "/v1/logs", document, Authorization="Bearer nope")[0] == 401
        assert post_json(base, "/v1/logs", document, Authorization=f"Bearer {writer}")[0] == 200


def test_a_full_disk_asks_the_exporter_to_retry_and_keeps_what_was_stored(
    small_disk: Path,
) -> None:
    url = f"sqlite:///{small_disk / 'sessions.db'}"
    claude_session = str(uuid.uuid4())
    many = logs([api_request(claude_session, n, model=f"model-{n}") for n in range(60)])
    with http_server(url) as (base, _):
        assert post_json(base, "/v1/logs", logs([api_request(claude_session, 0)]))[0] == 200
        filler = fill(small_disk)
        status, headers, body = post(base, "/v1/logs", json.dumps(many).encode())
        assert status == 503 and headers["retry-after"] == "2"
        assert json.loads(body)["error_code"] == "store_unavailable"
        filler.unlink()
        assert post_json(base, "/v1/logs", many)[0] == 200  # the exporter's retry
        waiting = json.loads(run_cli(url, "sessions", "list", "--json").stdout)
    assert waiting["sessions"] == []
    with http_server(url) as (base, _):
        session_id = asyncio.run(start(base, claude_session))
    assert usage_of(url, session_id)["api_requests"] == 61


def test_more_exports_at_once_than_it_takes_are_asked_to_retry(tmp_path: Path) -> None:
    """Four exports wait on a store another process holds locked: a fifth is told to
    retry (429) at once instead of queueing; the four are stored once the lock goes."""
    path = tmp_path / "locked.db"
    document = logs([api_request(str(uuid.uuid4()), 0)])
    with http_server(f"sqlite:///{path}") as (base, _):
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(4) as pool:
            waiting = [pool.submit(post_json, base, "/v1/logs", document) for _ in range(4)]
            time.sleep(1.0)
            status, headers, body = post(base, "/v1/logs", json.dumps(document).encode())
            holder.execute("ROLLBACK")
            answered = [future.result()[0] for future in waiting]
    assert status == 429 and headers["retry-after"] == "1"
    assert json.loads(body)["error_code"] == "busy"
    assert answered == [200] * 4


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_decoder_that_dies_is_replaced_and_a_killed_server_leaves_none(tmp_path: Path) -> None:
    """Export requests are decoded in a process of the server's own: killed, it costs one
    retry (503); the server killed, it goes too."""
    url = f"sqlite:///{tmp_path / 'decoded.db'}"
    claude_session = str(uuid.uuid4())
    document = logs([api_request(claude_session, 0)])
    with http_server(url) as (base, server):
        assert post_json(base, "/v1/logs", document)[0] == 200
        helpers = children(server.pid)
        assert helpers  # the decoder (and multiprocessing's resource tracker)
        for pid in helpers:
            os.kill(pid, signal.SIGKILL)
        statuses = [post_json(base, "/v1/logs", document)[0] for _ in range(3)]
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}
        helpers = children(server.pid)
        server.kill()
        server.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in helpers if alive(pid)]
    with http_server(url) as (base, _):
        session_id = asyncio.run(start(base, claude_session))
    assert usage_of(url, session_id)["api_requests"] == statuses.count(200) + 1


def test_protobuf_answers_decode_as_opentelemetry_proto_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'answers.db'}"
    nameless = logs([log_record("api_request", NOW_NS) for _ in range(3)])
    pointless = active_time("x", 1.0, NOW_NS)
    point = pointless["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]
    point["dataPoints"][0]["attributes"] = []  # no session.id
    with http_server(url) as (base, _):
        status, _, body = post(base, "/v1/logs", protobuf(nameless), "application/x-protobuf")
        logs_answer = ExportLogsServiceResponse.FromString(body)
        status_m, _, body = post(base, "/v1/metrics", protobuf(pointless), "application/x-protobuf")
        metrics_answer = ExportMetricsServiceResponse.FromString(body)
    assert (status, status_m) == (200, 200)
    assert logs_answer.partial_success.rejected_log_records == 3
    assert logs_answer.partial_success.error_message.endswith("naming a session: 3")
    assert metrics_answer.partial_success.rejected_data_points == 1
    assert "data points without a session.id" in metrics_answer.partial_success.error_message
