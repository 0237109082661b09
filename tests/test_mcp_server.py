"""The MCP server through the official client: in memory, over stdio and over HTTP."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from prometheus_client.parser import text_string_to_metric_families

from conftest import start_payload
from mcp_helpers import (
    INITIALIZE,
    call,
    http_client,
    http_server,
    in_memory,
    server_env,
    structured,
)
from session_buddy.core import SessionLifecycleManager

TOOLS = {
    "track_session_start",
    "track_session_end",
    "track_session_heartbeat",
    "get_session",
    "list_sessions",
    "session_stats",
    "list_session_events",
    "list_alert_rules",
    "add_alert_rule",
    "remove_alert_rule",
    "test_alert_rule",
    "health_check",
}


async def oneiric_sequence(client: Client, token: str | None = None) -> None:
    """The exact calls the Oneiric shell emitter makes."""
    auth = {"token": token} if token else {}
    health = await call(client, "health_check", {})
    assert health["status"] == "ok" and health["database_reachable"] is True
    event = start_payload(event_id=str(uuid.uuid4()), component_name="oneiric") | auth
    started = await call(client, "track_session_start", event)
    assert started == {"session_id": "oneiric-20260206-123456", "status": "tracked", "error": None}
    ended = await call(
        client,
        "track_session_end",
        {
            "event_type": "session_end",
            "session_id": started["session_id"],
            "timestamp": "2026-02-06T13:45:07.890Z",
            "metadata": {"exit_reason": "user_exit"},
        }
        | auth,
    )
    assert ended["status"] == "ended" and ended["session_status"] == "ended"
    assert ended["duration_seconds"] == pytest.approx(4211.101)


async def test_every_tool_has_an_output_schema(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
            assert "token" in tool.input_schema["properties"], tool.name


async def test_oneiric_sequence_in_memory(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        await oneiric_sequence(client)


async def test_all_tools_in_memory(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        started = await call(client, "track_session_start", start_payload())
        session_id = started["session_id"]
        beat = await call(client, "track_session_heartbeat", {"session_id": session_id})
        assert beat == {"session_id": session_id, "status": "recorded", "session_status": "active"}
        record = await call(client, "get_session", {"session_id": session_id})
        assert record["status"] == "active" and record["hostname"] == "server01"
        page = await call(client, "list_sessions", {"status": "active", "limit": 10})
        assert [s["session_id"] for s in page["sessions"]] == [session_id]
        assert page["next_cursor"] is None
        crashed = await call(
            client,
            "track_session_end",
            {
                "session_id": session_id,
                "timestamp": "2026-02-06T12:35:56.789Z",
                "metadata": {"exit_code": 139},
            },
        )
        assert (crashed["status"], crashed["session_status"]) == ("ended", "crashed")
        stats = await call(client, "session_stats", {"group_by": "component_name"})
        [group] = stats["groups"]
        assert (group["key"], group["crashed"], group["crash_rate"]) == ("mahavishnu", 1, 1.0)
        missing = await call(client, "get_session", {"session_id": "nope-20260101-000000"})
        assert missing == {"session_id": "nope-20260101-000000", "status": "not_found"}
        unknown_end = await call(
            client, "track_session_end", {"session_id": "nope", "timestamp": "2026-02-06T12:00:00Z"}
        )
        assert unknown_end["status"] == "not_found"
        late_beat = await call(client, "track_session_heartbeat", {"session_id": session_id})
        assert late_beat["status"] == "ignored" and late_beat["session_status"] == "crashed"


async def test_objects_sent_as_json_text_are_read_as_objects(
    manager: SessionLifecycleManager,
) -> None:
    """Some clients send every object argument as a JSON string."""
    event = start_payload(
        user=json.dumps({"username": "john", "home": "/home/john"}),
        metadata=' {"ticket": "OPS-1"} ',
    )
    async with in_memory(manager) as client:
        started = await call(client, "track_session_start", event)
        assert started["status"] == "tracked", started
        record = await call(client, "get_session", {"session_id": started["session_id"]})
        assert (record["username"], record["start_metadata"]) == ("john", {"ticket": "OPS-1"})
        ended = await call(
            client,
            "track_session_end",
            {
                "session_id": started["session_id"],
                "timestamp": "2026-02-06T12:35:56Z",
                "metadata": '{"exit_code": 1}',
            },
        )
        assert ended["session_status"] == "crashed"


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("track_session_start", start_payload(pid="not-a-number"), "pid"),
        ("track_session_start", start_payload(pid=[1, 2]), "pid"),
        ("track_session_start", start_payload(timestamp="2026-02-30T00:00:00Z"), "timestamp"),
        ("track_session_start", start_payload(user="john"), "user"),
        ("track_session_start", {"event_version": "1.0"}, "event_id"),
        ("track_session_start", start_payload(metadata=["not", "an", "object"]), "metadata"),
        (
            "track_session_end",
            {"session_id": 42, "timestamp": "2026-02-06T12:00:00Z"},
            "session_id",
        ),
        ("track_session_end", {"session_id": "x"}, "timestamp"),
        (
            "track_session_end",
            {"session_id": "x", "timestamp": "2026-02-06T12:00:00Z", "event_type": "session_start"},
            "event_type",
        ),
        ("track_session_heartbeat", {}, "session_id"),
        ("track_session_heartbeat", {"session_id": "x", "timestamp": "noon"}, "timestamp"),
        ("get_session", {"session_id": {"a": 1}}, "session_id"),
        ("list_sessions", {"limit": 0}, "limit"),
        ("list_sessions", {"limit": "many"}, "limit"),
        ("list_sessions", {"status": "sleeping"}, "status"),
        ("list_sessions", {"cursor": "garbage"}, "cursor"),
        ("list_sessions", {"started_after": "yesterday"}, "started_after"),
        ("session_stats", {"group_by": "pid"}, "group_by"),
        ("session_stats", {"since": "last week"}, "since"),
    ],
)
async def test_argument_errors_are_results_naming_the_field(
    manager: SessionLifecycleManager, tool: str, arguments: dict[str, Any], field: str
) -> None:
    async with in_memory(manager) as client:
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result.content
        content = structured(result)
        assert content["status"] == "error"
        assert field in content["error"]
        # The server is still fine afterwards.
        assert (await call(client, "health_check", {}))["status"] == "ok"


async def test_stdio_server_speaks_only_protocol_on_stdout(tmp_path: Path) -> None:
    database = tmp_path / "stdio.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "session_buddy"],
        env=server_env(f"sqlite:///{database}"),
    )
    async with Client(params) as client:
        await oneiric_sequence(client)
        page = await call(client, "list_sessions", {})
        assert len(page["sessions"]) == 1
    async with SessionLifecycleManager(f"sqlite:///{database}") as manager:
        stored = await manager.get_session("oneiric-20260206-123456")
        assert stored and stored["status"] == "ended"


async def test_http_server_tools_health_and_metrics(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'http.db'}"
    log = tmp_path / "server.log"
    with http_server(database_url, log=log) as (base, process):
        async with http_client(base) as client:
            await oneiric_sequence(client)
            await call(client, "track_session_start", start_payload(component_name="active1"))
            bad = await call(client, "track_session_start", start_payload(pid=0))
            assert bad["status"] == "error"
        health = httpx2.get(f"{base}/healthz").json()
        assert health["status"] == "ok" and health["active_sessions"] == 1
        metrics = httpx2.get(f"{base}/metrics")
        assert metrics.status_code == 200
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
        }
        assert samples[("session_buddy_sessions_active", ())] == 1.0
        assert samples[("session_buddy_sessions_started_total", (("component", "oneiric"),))] == 1
        assert (
            samples[
                (
                    "session_buddy_sessions_ended_total",
                    (("component", "oneiric"), ("state", "ended")),
                )
            ]
            == 1
        )
        assert samples[("session_buddy_events_rejected_total", (("reason", "invalid_pid"),))] == 1
        assert (
            samples[
                ("session_buddy_events_total", (("outcome", "tracked"), ("type", "session_start")))
            ]
            == 2
        )
        assert (
            samples[("session_buddy_session_duration_seconds_count", (("component", "oneiric"),))]
            == 1
        )
        assert (
            samples[
                (
                    "session_buddy_tool_call_duration_seconds_count",
                    (("tool", "track_session_start"),),
                )
            ]
            == 3
        )
        labels = {name for name, _ in samples for name in dict(_)}
        assert not labels & {"session_id", "username", "hostname", "user"}
        oversized = httpx2.post(
            f"{base}/mcp",
            content=b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * 5_000_000,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        assert oversized.status_code == 413
        foreign = httpx2.post(f"{base}/mcp", headers={"Host": "evil.example"}, json={})
        assert foreign.status_code in (400, 421)
        assert httpx2.get(f"{base}/healthz", headers={"Host": "evil.example"}).status_code == 421
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert "session store closed" in log.read_text()


async def test_http_server_without_secret_refuses_a_public_bind(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "session_buddy",
            "serve",
            "--http",
            "--host",
            "0.0.0.0",
            "--port",
            "1",
        ],
        env=server_env(f"sqlite:///{tmp_path / 'x.db'}"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "SESSION_BUDDY_SECRET" in result.stderr and "--insecure-bind" in result.stderr


def test_stdio_stdout_carries_only_json_rpc_and_sigterm_closes_cleanly(tmp_path: Path) -> None:
    import subprocess

    database = tmp_path / "raw.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "session_buddy", "serve"],
        env=server_env(f"sqlite:///{database}", SESSION_BUDDY_LOG_LEVEL="DEBUG"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin and process.stdout and process.stderr
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "track_session_start", "arguments": start_payload()},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "track_session_start", "arguments": {"pid": "bad"}},
        },
    ]
    for message in messages:
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()
    replies = [json.loads(process.stdout.readline()) for _ in range(3)]
    assert all(reply["jsonrpc"] == "2.0" for reply in replies)
    by_id = {reply["id"]: reply for reply in replies}
    assert by_id[2]["result"]["structuredContent"]["status"] == "tracked"
    assert by_id[3]["result"]["structuredContent"]["status"] == "error"
    process.send_signal(signal.SIGTERM)  # every reply read: the server has done its work
    assert process.wait(timeout=15) == 0
    leftover = process.stdout.read()
    assert leftover.strip() == ""  # nothing but protocol messages on stdout
    log = process.stderr.read()
    assert "Session started" in log and "session store closed" in log


def test_one_host_check_on_every_path(tmp_path: Path) -> None:
    """Host names compare case-insensitively on every path, ports aside; --allowed-host
    may carry a port; a foreign Origin is refused."""
    database = f"sqlite:///{tmp_path / 'hosts.db'}"
    with http_server(database, "--allowed-host", "Sessions.Example:8443") as (base, _):
        for host in ("LOCALHOST:1", "127.0.0.1", "sessions.example", "SESSIONS.EXAMPLE:9"):
            assert httpx2.get(f"{base}/healthz", headers={"Host": host}).status_code == 200
        for host in ("evil.example", "localhost.evil.example", "127.0.0.1.evil", ""):
            for path in ("/healthz", "/metrics", "/mcp"):
                refused = httpx2.get(f"{base}{path}", headers={"Host": host})
                assert refused.status_code == 421, (host, path)
                assert refused.json() == {
                    "error": "Invalid Host header",
                    "error_code": "invalid_host",
                }
        origin = httpx2.post(
            f"{base}/mcp", headers={"Origin": "http://evil.example"}, json={"jsonrpc": "2.0"}
        )
        assert origin.status_code == 403
        assert origin.json() == {"error": "Invalid Origin header", "error_code": "invalid_origin"}
