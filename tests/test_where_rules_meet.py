"""Where two rules meet (DESIGN §3): each failure the review found, through a public
face (MCP, the command line, the hook, HTTP), on both engines where the engine matters.
The numbers refer to the review's list (issue 20)."""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import postgres_schema, start_payload
from mcp_helpers import call, in_memory, run_cli
from pg_proxy import postgres_proxy
from session_buddy.app.metrics import SessionMetrics
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp.server import build_mcp_server
from session_buddy.timestamps import format_micros
from session_buddy.web.app import build_http_app

MINUTE = 60_000_000
DAY = 24 * 60 * MINUTE
CLAUDE = "5b0c6a1e-3d2f-4c8b-9a7e-1f2d3c4b5a69"


class Clock:
    """The server's clock, moved by the test (UTC microseconds)."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1000

    def __call__(self) -> int:
        return self.now

    def at(self, back_us: int = 0) -> str:
        return str(format_micros(self.now - back_us))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def manager(database_url: str, clock: Clock) -> AsyncIterator[SessionLifecycleManager]:
    async with SessionLifecycleManager(
        database_url, abandon_after=timedelta(minutes=5), clock=clock
    ) as opened:
        yield opened


def claude_start(clock: Clock, pid: int | None, back_us: int = 0, **extra: Any) -> dict[str, Any]:
    return start_payload(
        event_id=str(uuid.uuid4()),
        component_name="claude-code",
        timestamp=clock.at(back_us),
        pid=pid,
        hostname=platform.node(),
        metadata={"external_id": CLAUDE} | extra,
    )


async def test_1_retention_keeps_a_session_that_is_only_quiet(
    manager: SessionLifecycleManager, clock: Clock
) -> None:
    """A session started two days ago, active until a minute ago, then abandoned for
    silence, is not pruned by a 1-day retention in the same reaper run; its next
    heartbeat revives it."""
    async with in_memory(manager) as client:
        started = await call(
            client, "track_session_start", start_payload(timestamp=clock.at(2 * DAY))
        )
        session_id = started["session_id"]
        beat = {"session_id": session_id, "timestamp": clock.at(MINUTE)}
        assert (await call(client, "track_session_heartbeat", beat))["status"] == "recorded"
        clock.now += 10 * MINUTE  # silent for longer than abandon_after (5 min)
        reaped, report = await manager.upkeep(retention=timedelta(days=1))
        assert reaped == [session_id]
        assert report is not None and (report.sessions, report.events) == (0, 0)
        record = await call(client, "get_session", {"session_id": session_id})
        assert record["status"] == "abandoned" and record["end_reason"].startswith("timeout")
        again = await call(client, "track_session_heartbeat", {"session_id": session_id})
        assert (again["status"], again["session_status"]) == ("recorded", "active")
        clock.now += 2 * DAY  # quiet, and then ended long ago: now it goes
        await call(
            client,
            "track_session_end",
            {"session_id": session_id, "timestamp": clock.at(2 * DAY - MINUTE)},
        )
        _, report = await manager.upkeep(retention=timedelta(days=1))
        assert report is not None and report.sessions == 1
        gone = await call(client, "get_session", {"session_id": session_id})
        assert gone["status"] == "not_found"


async def test_2_prune_never_deletes_a_session_a_heartbeat_revived(tmp_path: Path) -> None:
    """Two servers on one PostgreSQL database: one prunes while the other's heartbeats
    revive the sessions being pruned. A heartbeat answered `recorded` means the session
    is there afterwards (the delete checks the rule again, and skips rows a heartbeat
    holds)."""
    clock = Clock()
    with postgres_schema() as url:
        async with (
            SessionLifecycleManager(url, abandon_after=60, clock=clock) as pruner,
            SessionLifecycleManager(url, abandon_after=60, clock=clock) as beater,
        ):
            for attempt in range(4):
                ids = []
                for i in range(60):
                    event = start_payload(
                        event_id=str(uuid.uuid4()),
                        component_name=f"round{attempt}",
                        timestamp=clock.at(3 * DAY - i),
                        pid=None,
                    )
                    ids.append((await SessionService(beater).start(event)).session_id)
                clock.now += 2 * MINUTE
                await beater.reap()  # all 60 abandoned for silence, quiet since 3 days
                service = SessionService(beater)
                cutoff = clock.at(DAY)
                beats, pruned = await asyncio.gather(
                    asyncio.gather(*(service.heartbeat(i, None) for i in ids)),
                    pruner.prune(cutoff),
                )
                revived = [b["session_id"] for b in beats if b["status"] == "recorded"]
                for session_id in revived:
                    record = await beater.get_session(str(session_id))
                    assert record is not None and record["status"] == "active", session_id
                assert len(revived) + pruned.sessions == 60


async def test_3_a_resumed_claude_session_moves_to_its_new_process(tmp_path: Path) -> None:
    """Claude Code crashes (its process dies, no SessionEnd) and `claude --resume` starts
    a new process with the same Claude session id: the hook's SessionStart moves the
    running session to the new pid, and `reap` leaves it alone."""
    url = f"sqlite:///{tmp_path / 'claude.db'}"
    first = _claude_process(tmp_path, "startup")
    first_pid = int(first.stdout.readline())  # type: ignore[union-attr]
    first.kill()
    first.wait()
    second = _claude_process(tmp_path, "resume")
    try:
        second_pid = int(second.stdout.readline())  # type: ignore[union-attr]
        assert json.loads(run_cli(url, "reap", "--json").stdout)["abandoned"] == []
        [record] = _claude_sessions(url)
        assert (record["pid"], record["status"]) == (second_pid, "active")
        assert second_pid != first_pid
        events = json.loads(
            run_cli(url, "sessions", "events", record["session_id"], "--json").stdout
        )
        assert [e["outcome"] for e in events] == ["tracked", "resumed"]
        beat = _hook(tmp_path, {"hook_event_name": "UserPromptSubmit"})
        assert f"working: {record['session_id']}" in beat
    finally:
        second.kill()
        second.wait()
    assert json.loads(run_cli(url, "reap", "--json").stdout)["abandoned"] == [record["session_id"]]


async def test_4_a_redelivered_end_never_ends_the_resumed_session(
    manager: SessionLifecycleManager, clock: Clock
) -> None:
    """A Claude session ends; `--resume` starts a new linked session; the end is
    delivered again (a flusher killed before its page committed), with its event id and
    without one. The resumed session stays active."""
    async with in_memory(manager) as client:
        first = await call(client, "track_session_start", claude_start(clock, 4101, MINUTE))
        end = {
            "external_id": CLAUDE,
            "event_id": str(uuid.uuid4()),
            "timestamp": clock.at(30_000_000),
            "metadata": {"exit_reason": "logout"},
        }
        ended = await call(client, "track_session_end", end)
        assert (ended["session_id"], ended["session_status"]) == (first["session_id"], "ended")
        resumed = await call(
            client, "track_session_start", claude_start(clock, 4102, source="resume")
        )
        assert resumed["session_id"] != first["session_id"]
        for again in (end, {k: v for k, v in end.items() if k != "event_id"}):
            answer = await call(client, "track_session_end", again)
            assert (answer["session_id"], answer["session_status"]) == (
                first["session_id"],
                "ended",
            )
        record = await call(client, "get_session", {"session_id": resumed["session_id"]})
        assert (record["status"], record["previous_session_id"]) == ("active", first["session_id"])


async def test_5_a_revive_beside_a_newer_running_session_is_ignored(
    manager: SessionLifecycleManager, clock: Clock
) -> None:
    async with in_memory(manager) as client:
        old = await call(client, "track_session_start", claude_start(clock, None))
        clock.now += 10 * MINUTE
        assert await manager.reap() == [old["session_id"]]  # abandoned for silence
        new = await call(client, "track_session_start", claude_start(clock, None))
        assert new["session_id"] != old["session_id"]
        late = await call(
            client,
            "track_session_heartbeat",
            {"session_id": old["session_id"], "activity": "working"},
        )
        assert (late["status"], late["session_status"]) == ("ignored", "abandoned")
        assert "error_code" not in late or late["error_code"] is None
        health = await call(client, "health_check", {})
        assert (health["status"], health["active_sessions"]) == ("ok", 1)
        running = await call(client, "get_session", {"session_id": new["session_id"]})
        assert running["status"] == "active"


async def test_6_a_lost_commit_answer_counts_once_on_postgres() -> None:
    """The proxy loses the answer to a start's COMMIT after the server committed it: the
    store asks whether it committed instead of running it again, so the client hears
    `tracked`, the event log has one row and the metrics count one start."""
    with postgres_schema() as url, postgres_proxy(url) as (proxy, proxied):
        async with SessionLifecycleManager(proxied) as manager:
            metrics = SessionMetrics()
            async with in_memory(manager, metrics) as client:
                proxy.lose_next_commit()
                started = await call(client, "track_session_start", start_payload())
                assert proxy.commits_lost == 1
                assert started["status"] == "tracked"
                proxy.lose_next_commit()
                ended = await call(
                    client,
                    "track_session_end",
                    {"session_id": started["session_id"], "timestamp": "2026-02-06T13:00:00Z"},
                )
                assert proxy.commits_lost == 2
                assert (ended["status"], ended["session_status"]) == ("ended", "ended")
            rows = await manager.store.read(
                lambda tx: tx.all("SELECT event_type, outcome FROM events ORDER BY id")
            )
    assert [(r["event_type"], r["outcome"]) for r in rows] == [
        ("session_start", "tracked"),
        ("session_end", "ended"),
    ]
    counted = {
        (sample.labels["type"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(metrics.render(1).decode())
        if family.name == "session_buddy_events"
        for sample in family.samples
        if sample.name == "session_buddy_events_total"
    }
    assert counted == {("session_start", "tracked"): 1.0, ("session_end", "ended"): 1.0}


async def test_7_text_arguments_stay_text(manager: SessionLifecycleManager) -> None:
    """ "null", "true" and "false" are component names like any other over MCP."""
    async with in_memory(manager) as client:
        for name in ("true", "null"):
            event = start_payload(event_id=str(uuid.uuid4()), component_name=name)
            assert (await call(client, "track_session_start", event))["status"] == "tracked"
        await call(client, "track_session_start", start_payload(event_id=str(uuid.uuid4())))
        page = await call(client, "list_sessions", {"component_name": "null"})
        assert [s["component_name"] for s in page["sessions"]] == ["null"]
        page = await call(client, "list_sessions", {"component_name": "false"})
        assert page["sessions"] == []


async def test_8_a_nul_in_a_lookup_is_an_invalid_argument_on_both_engines(
    manager: SessionLifecycleManager,
) -> None:
    service = SessionService(manager, metrics=SessionMetrics())
    async with in_memory(manager) as client:
        for tool, arguments in (
            ("get_session", {"session_id": "a\x00b"}),
            ("list_sessions", {"component_name": "x\x00"}),
            ("track_session_heartbeat", {"session_id": "a\x00b"}),
            ("track_session_end", {"session_id": "a\x00b", "timestamp": "2026-02-06T13:00:00Z"}),
        ):
            answer = await call(client, tool, arguments)
            assert answer["error_code"] == "invalid_argument", (tool, answer)
            named = f"{next(iter(arguments))}: must not contain control characters"
            assert named in answer["error"], answer
        health = await call(client, "health_check", {})
        assert health["status"] == "ok"
    transport = httpx2.ASGITransport(
        app=build_http_app(service, build_mcp_server(service), bind_host="127.0.0.1")
    )
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
        page = await web.get("/sessions/a%00b")  # refused at the door, named
        assert page.status_code == 400
        assert page.json() == {
            "error": "control character '\\x00' in the request's path or query",
            "error_code": "invalid_request",
        }
        listed = await web.get("/sessions", params={"hostname": "h\x00"})
        assert listed.status_code == 400
        assert (await web.get("/healthz")).status_code == 200


@pytest.mark.parametrize("limit", ["²", "9" * 5000, "١٢", " 7x"])
async def test_9_a_limit_that_is_not_ascii_digits_names_limit(
    manager: SessionLifecycleManager, limit: str
) -> None:
    async with in_memory(manager) as client:
        answer = await call(client, "list_sessions", {"limit": limit})
    assert answer["error_code"] == "invalid_argument"
    assert answer["error"].startswith("limit: must be an integer")
    assert len(answer["error"]) < 200


def test_10_a_zombie_is_a_gone_process(tmp_path: Path) -> None:
    """A process that exited but was not waited for by its parent is gone: `reap`
    abandons its session at once."""
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    parent = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE_PARENT], stdout=subprocess.PIPE, stdin=subprocess.PIPE
    )
    try:
        zombie = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert _process_state(zombie) == "Z"
        session_id = run_cli(
            url, "emit", "start", "--component", "zombie", "--pid", str(zombie)
        ).stdout.strip()
        reaped = json.loads(run_cli(url, "reap", "--json").stdout)["abandoned"]
        assert reaped == [session_id]
        shown = json.loads(run_cli(url, "sessions", "show", session_id, "--json").stdout)
        assert shown["end_reason"].startswith(f"process_gone (pid {zombie} exited; ")
    finally:
        parent.kill()
        parent.wait()


def test_11_the_hook_says_when_its_heartbeat_was_ignored(tmp_path: Path) -> None:
    """An activity event for a Claude session that has ended is ignored, and the hook
    says so instead of `working: <id>`."""
    _hook(tmp_path, {"hook_event_name": "SessionStart", "source": "startup"})
    _hook(tmp_path, {"hook_event_name": "SessionEnd", "reason": "logout"})
    said = _hook(tmp_path, {"hook_event_name": "UserPromptSubmit"})
    assert "ignored: claude-code-" in said and "is ended, not active" in said
    assert "working:" not in said


ZOMBIE_PARENT = """
import os, subprocess, sys
child = subprocess.Popen(["true"])
while True:  # wait until it has exited, without reaping it
    with open(f"/proc/{child.pid}/stat") as stat:
        if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
            break
print(child.pid, flush=True)
sys.stdin.read()
"""

# Claude Code stand-in: runs the hook through `sh -c` with a SessionStart, prints its own
# pid, and lives until killed.
CLAUDE_PROCESS = """
import json, os, subprocess, sys
payload = {"session_id": sys.argv[1], "hook_event_name": "SessionStart", "source": sys.argv[2],
           "cwd": "/srv/app"}
hook = f"{sys.executable} -m session_buddy hook claude-code"
subprocess.run(hook, shell=True, input=json.dumps(payload), text=True, capture_output=True)
print(os.getpid(), flush=True)
sys.stdin.read()
"""


def _hook_env(tmp_path: Path) -> dict[str, str]:
    from mcp_helpers import server_env

    return server_env(
        f"sqlite:///{tmp_path / 'claude.db'}", SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db")
    )


def _claude_process(tmp_path: Path, source: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLAUDE_PROCESS, CLAUDE, source],
        env=_hook_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _hook(tmp_path: Path, payload: dict[str, Any]) -> str:
    """Run the hook through `sh -c` as Claude Code does; its stderr."""
    body = {"session_id": CLAUDE, "cwd": "/srv/app"} | payload
    done = subprocess.run(
        f"{sys.executable} -m session_buddy hook claude-code",
        shell=True,
        input=json.dumps(body),
        env=_hook_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    return done.stderr


def _claude_sessions(url: str) -> list[dict[str, Any]]:
    listed = run_cli(url, "sessions", "list", "--component", "claude-code", "--json").stdout
    return list(json.loads(listed)["sessions"])


def _process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]
