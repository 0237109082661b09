"""`session-buddy hook claude-code` fed with real-shaped Claude Code hook payloads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mcp_helpers import free_port, http_server, server_env, spooled
from session_buddy.core import SessionLifecycleManager

CLAUDE_ID = "3f1c2a9e-7b4d-4e8a-9c1f-2d6b8e0a5c47"
NEXT_ID = "8d2e4f6a-1b3c-4d5e-8f9a-0b1c2d3e4f5a"


def payload(event: str, session_id: str = CLAUDE_ID, **extra: str) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "transcript_path": f"/home/dev/.claude/projects/-srv-app/{session_id}.jsonl",
        "cwd": "/srv/app",
        "hook_event_name": event,
        **extra,
    }


def hook(tmp_path: Path, body: str | dict[str, Any], *args: str) -> tuple[float, str]:
    """Run the hook like Claude Code does; (seconds it took, its stderr)."""
    database_url = f"sqlite:///{tmp_path / 'claude.db'}"
    env = server_env(database_url, SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db"))
    text = body if isinstance(body, str) else json.dumps(body)
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "session_buddy", "hook", "claude-code", *args],
        input=text,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr  # never fails Claude Code
    return took, result.stderr


async def sessions(tmp_path: Path) -> list[dict[str, Any]]:
    async with SessionLifecycleManager(f"sqlite:///{tmp_path / 'claude.db'}") as manager:
        page = await manager.list_sessions(component_name="claude-code")
    return list(reversed(page["sessions"]))  # oldest first


async def test_startup_compact_end_resume_and_clear(tmp_path: Path) -> None:
    hook(tmp_path, payload("SessionStart", source="startup"))
    hook(tmp_path, payload("SessionStart", source="compact"))  # same running session
    [first] = await sessions(tmp_path)
    assert (first["status"], first["external_id"], first["shell_type"]) == (
        "active",
        CLAUDE_ID,
        "ClaudeCode",
    )
    assert first["cwd"] == "/srv/app"
    assert first["start_metadata"]["source"] == "startup"

    hook(tmp_path, payload("SessionEnd", reason="prompt_input_exit"))
    hook(tmp_path, payload("SessionEnd", reason="prompt_input_exit"))  # repeat: no change
    [first] = await sessions(tmp_path)
    assert (first["status"], first["end_reason"]) == ("ended", "prompt_input_exit")

    hook(tmp_path, payload("SessionStart", source="resume"))
    first, resumed = await sessions(tmp_path)
    assert resumed["status"] == "active"
    assert resumed["external_id"] == CLAUDE_ID
    assert resumed["previous_session_id"] == first["session_id"]

    hook(tmp_path, payload("SessionEnd", reason="clear"))
    hook(tmp_path, payload("SessionStart", NEXT_ID, source="clear"))
    first, resumed, cleared = await sessions(tmp_path)
    assert (resumed["status"], resumed["end_reason"]) == ("ended", "clear")
    assert (cleared["status"], cleared["external_id"]) == ("active", NEXT_ID)
    assert cleared["previous_session_id"] is None


async def test_server_down_spools_within_the_hook_budget(tmp_path: Path) -> None:
    port = free_port()
    down = f"http://127.0.0.1:{port}/mcp"  # nothing listens here yet
    took_start, said = hook(
        tmp_path, payload("SessionStart", source="startup"), "--server-url", down
    )
    took_end, _ = hook(tmp_path, payload("SessionEnd", reason="logout"), "--server-url", down)
    assert took_start < 1.5 and took_end < 1.5
    assert "spooled" in said
    waiting = spooled(tmp_path / "spool.db")
    assert [record["kind"] for record in waiting] == ["start", "end_external"]
    assert {record["destination"] for record in waiting} == {down}
    database_url = f"sqlite:///{tmp_path / 'claude.db'}"
    env = server_env(database_url, SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db"))
    with http_server(database_url, port=port):  # the server comes back where it was
        flushed = subprocess.run(
            [sys.executable, "-m", "session_buddy", "spool", "flush"],
            env=env,
            capture_output=True,
            text=True,
        )
    assert flushed.returncode == 0, flushed.stderr
    [session] = await sessions(tmp_path)
    assert (session["status"], session["end_reason"], session["external_id"]) == (
        "ended",
        "logout",
        CLAUDE_ID,
    )


def test_malformed_payloads_exit_zero_and_say_why(tmp_path: Path) -> None:
    for body, phrase in [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps(payload("PreToolUse")), "not handled"),
        (json.dumps({"hook_event_name": "SessionStart"}), "session_id"),
    ]:
        _, said = hook(tmp_path, body)
        assert phrase in said
