"""Sessions out: a real server sends every transition as an OpenTelemetry log record,
through the OpenTelemetry SDK's OTLP exporter, to a test collector that decodes them
with opentelemetry-proto."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_helpers import free_port, http_server, run_cli, server_env
from otel_collector import Collector, collector
from otlp_requests import SECOND_NS, log_record, logs, post_json

SESSION_BUDDY = str(Path(sys.executable).with_name("session-buddy"))


@pytest.fixture
def receiving() -> Iterator[Collector]:
    with collector() as running:
        yield running


def exporting_to(url: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer collector-token",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "sessions-here",
        **extra,
    }


def hook(database_url: str, server: str, claude_session: str, event: str, **extra: str) -> None:
    payload = {"session_id": claude_session, "hook_event_name": event, "cwd": "/tmp"} | extra
    done = subprocess.run(
        [SESSION_BUDDY, "hook", "claude-code"],
        input=json.dumps(payload),
        env=server_env(database_url, SESSION_BUDDY_SERVER_URL=f"{server}/mcp"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def emit(database_url: str, server: str, command: str, *args: str) -> str:
    env = {"SESSION_BUDDY_SERVER_URL": f"{server}/mcp"}
    done = run_cli(database_url, "emit", command, "--timeout", "10", *args, **env)
    return done.stdout.strip()


def by_event(records: list[dict[str, Any]], session_id: str) -> list[tuple[str, str]]:
    return [
        (r["event_name"], r["attributes"]["session_buddy.outcome"])
        for r in records
        if r["attributes"]["session.id"] == session_id
    ]


def test_every_transition_reaches_the_collector_with_the_conventions_fields(
    tmp_path: Path, receiving: Collector
) -> None:
    url = f"sqlite:///{tmp_path / 'exported.db'}"
    claude_session = str(uuid.uuid4())
    env = exporting_to(
        receiving.url, SESSION_BUDDY_ABANDON_AFTER="3", SESSION_BUDDY_REAP_INTERVAL="0.5"
    )
    with http_server(url, **env) as (base, _):
        hook(url, base, claude_session, "SessionStart", source="startup")
        hook(url, base, claude_session, "UserPromptSubmit")
        record = log_record(
            "api_request",
            time.time_ns(),
            **{"session.id": claude_session, "cost_usd": 0.75, "input_tokens": 12},
        )
        assert post_json(base, "/v1/logs", logs([record]))[0] == 200
        hook(url, base, claude_session, "SessionEnd", reason="other")
        hook(url, base, claude_session, "SessionStart", source="resume")
        hook(url, base, claude_session, "SessionEnd", reason="other")
        crashed = emit(url, base, "start", "--component", "nightly", "--pid", str(os.getpid()))
        emit(url, base, "end", "--session-id", crashed, "--exit-code", "3")
        left = emit(url, base, "start", "--component", "forgotten")  # its process is gone
        records = receiving.wait_until(
            lambda got: any(
                r["attributes"]["session.id"] == left and r["event_name"] == "session.end"
                for r in got
            )
        )
        abandoned = [r for r in records if r["attributes"]["session.id"] == left]
        sessions = json.loads(run_cli(url, "sessions", "list", "--json").stdout)["sessions"]
    claude_runs = sorted(
        (s for s in sessions if s["external_id"] == claude_session), key=lambda s: s["started_at"]
    )
    first, second = (run["session_id"] for run in claude_runs)
    assert by_event(records, first) == [
        ("session.start", "tracked"),
        ("session_buddy.session.activity", "recorded"),
        ("session.end", "ended"),
    ]
    assert by_event(records, second) == [("session.start", "tracked"), ("session.end", "ended")]
    [resumed] = [r for r in records if r["attributes"]["session.id"] == second][:1]
    assert resumed["attributes"]["session.previous_id"] == first
    assert resumed["attributes"]["session_buddy.external_id"] == claude_session
    [ended] = [
        r
        for r in records
        if r["attributes"]["session.id"] == first and r["event_name"] == "session.end"
    ]
    assert ended["attributes"]["session_buddy.usage.cost_usd"] == pytest.approx(0.75)
    assert ended["attributes"]["session_buddy.usage.input_tokens"] == 12
    assert ended["attributes"]["session_buddy.status"] == "ended"
    assert ended["attributes"]["session_buddy.component_name"] == "claude-code"
    assert ended["severity"] == "INFO" and ended["scope"] == "session_buddy"
    assert ended["resource"]["service.name"] == "sessions-here"
    [crash] = [r for r in records if r["attributes"]["session.id"] == crashed][1:]
    assert (crash["event_name"], crash["severity"]) == ("session.end", "ERROR")
    assert crash["attributes"]["session_buddy.status"] == "crashed"
    assert crash["attributes"]["session_buddy.exit_code"] == 3
    assert [(r["event_name"], r["severity"]) for r in abandoned] == [
        ("session.start", "INFO"),
        ("session.end", "WARN"),
    ]
    assert "session.previous_id" not in abandoned[0]["attributes"]
    assert receiving.headers[0]["authorization"] == "Bearer collector-token"
    assert {r["time_unix_nano"] // SECOND_NS > 0 for r in records} == {True}


def test_a_collector_that_never_answers_holds_up_no_write(tmp_path: Path) -> None:
    """The exporter sends from its own thread; a hung collector costs writes nothing."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections, never reads or answers
    held: list[socket.socket] = []

    def hold() -> None:  # each connection is taken and kept, unread, until the test ends
        with contextlib.suppress(OSError):
            while True:
                held.append(silent.accept()[0])

    threading.Thread(target=hold, daemon=True).start()
    url = f"sqlite:///{tmp_path / 'hung.db'}"
    env = exporting_to(f"http://127.0.0.1:{silent.getsockname()[1]}")
    try:
        with http_server(url, **env) as (base, process):
            me = str(os.getpid())
            ids = [emit(url, base, "start", "--component", f"c{n}", "--pid", me) for n in range(20)]
            for session_id in ids:
                assert emit(url, base, "end", "--session-id", session_id) == "ended"
            process.terminate()
            assert process.wait(timeout=30) == 0
    finally:
        silent.close()
    assert len(json.loads(run_cli(url, "sessions", "list", "--json").stdout)["sessions"]) == 20


def test_an_export_it_cannot_make_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'refused.db'}"
    for given, named in (
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"),
        ({"OTEL_LOGS_EXPORTER": "console"}, "OTEL_LOGS_EXPORTER=console"),
    ):
        env = exporting_to("http://127.0.0.1:1") | given
        done = subprocess.run(
            [SESSION_BUDDY, "serve", "--http", "--port", str(free_port())],
            env=server_env(url, **env),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert named in line
    assert not Path(url.removeprefix("sqlite:///")).exists()  # refused before opening
