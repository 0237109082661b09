"""Alerts, end to end: rules added with the CLI, a real server (`serve --http`) raising
and delivering them, and real receivers (a JSON webhook, an SMTP server) reached through
Apprise URLs."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conftest import postgres_schema, start_payload
from mcp_helpers import http_server, run_cli
from receivers import Notice, SmtpReceiver, WebhookReceiver

# The server looks for conditions of time every second and reaps every half second.
FAST = {"SESSION_BUDDY_REAP_INTERVAL": "0.5"}


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Hooks:
    """Sessions driven through a server's Claude Code hook endpoint, as Claude Code does."""

    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, event: str, claude_id: str, **fields: Any) -> dict[str, Any]:
        payload = {"hook_event_name": event, "session_id": claude_id, "cwd": "/srv/app"}
        reply = httpx2.post(f"{self.base}/hooks/claude-code", json=payload | fields, timeout=10)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


def tool(base: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One MCP tool call over stateless JSON-RPC (as any HTTP client can)."""
    reply = httpx2.post(
        f"{base}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        },
        headers={"Accept": "application/json, text/event-stream"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["result"]["structuredContent"])


def start(base: str, component: str, **overrides: Any) -> str:
    payload = start_payload(component_name=component, timestamp=now_iso(), **overrides)
    result = tool(base, "track_session_start", payload)
    assert result["status"] == "tracked", result
    return str(result["session_id"])


def end(base: str, session_id: str, **metadata: Any) -> dict[str, Any]:
    return tool(
        base,
        "track_session_end",
        {"session_id": session_id, "timestamp": now_iso(), "metadata": metadata},
    )


def beat(base: str, session_id: str, activity: str, detail: str | None = None) -> None:
    arguments = {"session_id": session_id, "activity": activity}
    result = tool(base, "track_session_heartbeat", arguments | ({"detail": detail} if detail else {}))
    assert result["status"] == "recorded", result


def add_rule(url: str, name: str, *flags: str) -> None:
    run_cli(url, "alerts", "add", name, *flags)


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def keys(notices: list[Notice]) -> Counter[str | None]:
    return Counter(notice.key for notice in notices)


def settle(receiver: WebhookReceiver, seconds: float = 2.5) -> list[Notice]:
    """What the receiver has after nothing more is expected for `seconds`."""
    time.sleep(seconds)
    return list(receiver.notices)


def test_each_rule_fires_once_and_clears(sqlite_url: str, webhook: WebhookReceiver) -> None:
    hook = webhook.url()
    add_rule(sqlite_url, "waits", "--when", "waiting", "--for", "1s", "--component", "cw",
             "--notify", hook, "--resolved")
    add_rule(sqlite_url, "fails", "--when", "failing", "--component", "cf", "--notify", hook,
             "--resolved")
    add_rule(sqlite_url, "crashes", "--when", "crashed", "--component", "cc", "--notify", hook)
    add_rule(sqlite_url, "left", "--when", "abandoned", "--component", "ca", "--notify", hook,
             "--resolved")
    add_rule(sqlite_url, "silent", "--when", "stuck", "--for", "2s", "--component", "cs",
             "--notify", hook, "--resolved")
    add_rule(sqlite_url, "rate", "--when", "crash-rate", "--below", "90", "--component", "cr",
             "--notify", hook, "--resolved")
    with http_server(sqlite_url, "--stateless", **FAST) as (base, _):
        waiting = start(base, "cw")
        beat(base, waiting, "waiting_for_input")
        [fired] = webhook.wait_for(1)
        assert fired.title == f"session-buddy: {waiting} is waiting for input"
        assert "waiting for input for 1 s" in fired.body or "waiting for input for 2 s" in fired.body
        assert f"{base}/sessions/{waiting}" in fired.body
        assert "component: cw · host: server01 · user: john" in fired.body
        assert fired.key and fired.key.endswith("-firing") and f"key: {fired.key}" in fired.body
        beat(base, waiting, "working")
        webhook.wait_for(2)
        assert webhook.notices[1].title == f"session-buddy: resolved: {waiting} is waiting for input"

        failing = start(base, "cf")
        beat(base, failing, "failing", "rate_limit")
        beat(base, failing, "failing", "rate_limit")  # still failing: no second alert
        webhook.wait_for(3)
        assert "rate_limit" in webhook.notices[2].body
        beat(base, failing, "working")
        webhook.wait_for(4)
        assert webhook.notices[3].title == f"session-buddy: resolved: {failing} is failing"

        crashed = start(base, "cc")
        assert end(base, crashed, exit_code=3)["session_status"] == "crashed"
        end(base, crashed, exit_code=3)  # a second end changes nothing
        webhook.wait_for(5)
        assert webhook.notices[4].title == f"session-buddy: {crashed} crashed"
        assert "exit_code 3" in webhook.notices[4].body

        left = start(base, "ca", hostname=platform.node(), pid=dead_pid())
        webhook.wait_for(6)
        assert webhook.notices[5].title == f"session-buddy: {left} was abandoned"
        assert "process_gone (pid" in webhook.notices[5].body
        end(base, left)  # a late end: the session ended after all
        webhook.wait_for(7)
        assert webhook.notices[6].title == f"session-buddy: resolved: {left} was abandoned"

        stuck = start(base, "cs")
        beat(base, stuck, "working")
        webhook.wait_for(8, timeout=10)
        assert webhook.notices[7].title == f"session-buddy: {stuck} looks stuck"
        assert "working but silent for" in webhook.notices[7].body
        beat(base, stuck, "working")
        webhook.wait_for(9)
        assert webhook.notices[8].title == f"session-buddy: resolved: {stuck} looks stuck"

        for number in range(5):
            session = start(base, "cr")
            end(base, session, exit_code=int(number == 0))  # 1 of 5 crashed: 80 % crash-free
        webhook.wait_for(10)
        assert webhook.notices[9].title == "session-buddy: cr crashes too often"
        assert "crash-free 80.0% over the last hour (1 of 5" in webhook.notices[9].body
        for _ in range(5):
            end(base, start(base, "cr"))  # 9 of 10 crash-free: 90 %, not below 90
        webhook.wait_for(11)
        assert webhook.notices[10].title == "session-buddy: resolved: cr crashes too often"

        got = settle(webhook)
    assert len(got) == 11  # each fired once and cleared once, nothing more
    assert all(count == 1 for count in keys(got).values())
