"""`session-buddy hook claude-code` fed with real-shaped Claude Code hook payloads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mcp_helpers import free_port, http_server, mint_token, run_cli, server_env, spooled
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


def hook_env(tmp_path: Path) -> dict[str, str]:
    """The hook's environment: the local store and the spool in `tmp_path`."""
    database_url = f"sqlite:///{tmp_path / 'claude.db'}"
    return server_env(database_url, SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db"))


# A hook that waits for what it must not wait for (a store's 10 s lock timeout, a server
# that never answers) runs into this and fails the test; how fast hooks really answer is
# measured by benchmarks/bench_claude_hook.py, not asserted here.
HANG = 5.0


def hook(tmp_path: Path, body: str | dict[str, Any], *args: str) -> str:
    """Run the hook like Claude Code does; its stderr."""
    env = hook_env(tmp_path)
    text = body if isinstance(body, str) else json.dumps(body)
    result = subprocess.run(
        [sys.executable, "-m", "session_buddy", "hook", "claude-code", *args],
        input=text,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert result.returncode == 0, result.stderr  # never fails Claude Code
    return result.stderr


def flush(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`session-buddy spool flush` with the hook's store and spool."""
    return subprocess.run(
        [sys.executable, "-m", "session_buddy", "spool", "flush"],
        env=hook_env(tmp_path),
        capture_output=True,
        text=True,
    )


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


async def test_server_down_spools_the_start_and_the_end(tmp_path: Path) -> None:
    port = free_port()
    down = f"http://127.0.0.1:{port}/mcp"  # nothing listens here yet
    said = hook(tmp_path, payload("SessionStart", source="startup"), "--server-url", down)
    assert "spooled" in said
    said = hook(tmp_path, payload("SessionEnd", reason="logout"), "--server-url", down)
    assert "spooled" in said
    waiting = spooled(tmp_path / "spool.db")
    assert [record["payload"]["hook_event_name"] for record in waiting] == [
        "SessionStart",
        "SessionEnd",
    ]
    assert {record["destination"] for record in waiting} == {down}
    with http_server(f"sqlite:///{tmp_path / 'claude.db'}", port=port):  # back where it was
        flushed = flush(tmp_path)
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
        (json.dumps(payload("TeammateIdle")), "not handled"),
        (json.dumps({"hook_event_name": "SessionStart"}), "session_id"),
    ]:
        said = hook(tmp_path, body)
        assert phrase in said


CLAUDE_LIKE_PARENT = """
import os, subprocess, sys
payload, shell = sys.argv[1], sys.argv[2]
hook = f"{sys.executable} -m session_buddy hook claude-code"
if shell == "sh":
    subprocess.run(hook, shell=True, input=payload, text=True)  # /bin/sh -c, as Claude Code
else:
    subprocess.run(["bash", "-c", hook], input=payload, text=True)
print(os.getpid(), flush=True)
sys.stdin.read()  # lives until the test closes its stdin
"""


@contextmanager
def secured_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A server on the hook's store with a secret set; yields its base URL and a
    sessions:write token (the least a hook needs) from `session-buddy token create`."""
    secret = "claude-hook-secret-0123456789abcdefghijklmnop"
    database_url = f"sqlite:///{tmp_path / 'claude.db'}"
    token = mint_token(database_url, secret, "sessions:write")
    with http_server(database_url, SESSION_BUDDY_SECRET=secret) as (base, _):
        yield base, token


def reap(tmp_path: Path) -> list[str]:
    reaped = run_cli(f"sqlite:///{tmp_path / 'claude.db'}", "reap", "--json")
    return list(json.loads(reaped.stdout)["abandoned"])


@pytest.mark.parametrize("shell", ["sh", "bash"])
async def test_the_session_is_claude_codes_process_not_the_shell_wrapper(
    tmp_path: Path, shell: str
) -> None:
    claude = subprocess.Popen(
        [sys.executable, "-c", CLAUDE_LIKE_PARENT, json.dumps(payload("SessionStart")), shell],
        env=hook_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert claude.stdout is not None and claude.stdin is not None
    claude_pid = int(claude.stdout.readline())
    [session] = await sessions(tmp_path)
    assert session["pid"] == claude_pid
    assert reap(tmp_path) == []  # the wrapper shell is gone; Claude Code is not
    [session] = await sessions(tmp_path)
    assert session["status"] == "active"
    claude.stdin.close()  # Claude Code exits (no SessionEnd: Ctrl+C, kill, `claude -p`)
    claude.wait(timeout=10)
    assert reap(tmp_path) == [session["session_id"]]
    [session] = await sessions(tmp_path)
    assert session["status"] == "abandoned"
    assert session["end_reason"].startswith(f"process_gone (pid {claude_pid} exited; ")
    # The SessionEnd that comes late still ends it.
    said = hook(tmp_path, payload("SessionEnd", reason="prompt_input_exit"))
    assert f"ended Claude session {CLAUDE_ID}" in said
    [session] = await sessions(tmp_path)
    assert (session["status"], session["end_reason"]) == ("ended", "prompt_input_exit")


async def test_an_end_for_an_unknown_claude_session_says_so_and_is_logged(
    tmp_path: Path,
) -> None:
    said = hook(tmp_path, payload("SessionEnd", "never-started-1234", reason="logout"))
    assert "no session for Claude session never-started-1234" in said
    assert "ended" not in said
    async with SessionLifecycleManager(f"sqlite:///{tmp_path / 'claude.db'}") as manager:
        rows = await manager.store.read(
            lambda tx: tx.all("SELECT event_type, outcome, payload FROM events")
        )
    [logged] = [dict(row) for row in rows]
    assert (logged["event_type"], logged["outcome"]) == ("session_end", "not_found")


async def test_a_write_only_token_ends_claude_sessions_over_http(tmp_path: Path) -> None:
    with secured_server(tmp_path) as (base, token):
        options = ("--server-url", f"{base}/mcp", "--token", token)
        said = hook(tmp_path, payload("SessionStart", source="startup"), *options)
        assert said.startswith("tracked claude-code-")
        said = hook(tmp_path, payload("SessionEnd", reason="logout"), *options)
        assert f"ended Claude session {CLAUDE_ID}" in said and "ended" in said
        said = hook(tmp_path, payload("SessionEnd", "unknown-claude", reason="logout"), *options)
        assert "no session for Claude session unknown-claude" in said
    [session] = await sessions(tmp_path)
    assert (session["status"], session["end_reason"]) == ("ended", "logout")
    assert spooled(tmp_path / "spool.db") == []  # nothing blocked behind the refused end


async def test_a_locked_store_does_not_hold_the_hook(tmp_path: Path) -> None:
    import sqlite3

    hook(tmp_path, payload("SessionStart", "warm-up"))  # the store exists and is migrated
    locker = sqlite3.connect(tmp_path / "claude.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        said = hook(tmp_path, payload("SessionStart", source="startup"))
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert "spooled" in said
    flushed = flush(tmp_path)
    assert flushed.returncode == 0, flushed.stderr
    assert {s["external_id"] for s in await sessions(tmp_path)} == {"warm-up", CLAUDE_ID}


PROMPT = "please refactor the secret-sauce module"  # must never be stored


def conversation(claude_id: str = CLAUDE_ID) -> list[dict[str, Any]]:
    """A real-shaped Claude Code session, after its SessionStart."""
    return [
        payload("UserPromptSubmit", claude_id, prompt=PROMPT),
        payload(
            "Notification",
            claude_id,
            message="Claude needs your permission to use Bash",
            notification_type="permission_prompt",
        ),
        payload("SubagentStart", claude_id, agent_id="agent-7f3a", agent_type="Explore"),
        payload(
            "SubagentStop",
            claude_id,
            agent_id="agent-7f3a",
            agent_type="Explore",
            agent_transcript_path="/home/dev/.claude/agent-7f3a.jsonl",
            stop_hook_active="false",
        ),
        payload("Stop", claude_id, stop_hook_active="false"),
    ]


async def claude_sessions(tmp_path: Path) -> list[dict[str, Any]]:
    """The sessions of Claude session CLAUDE_ID (not its subagents), oldest first."""
    return [s for s in await sessions(tmp_path) if s["external_id"] == CLAUDE_ID]


async def check_conversation(database_url: str) -> dict[str, Any]:
    """What the conversation above must have left: the Claude session idle, its
    subagent a linked, ended child; no prompt anywhere. Returns the Claude session."""
    async with SessionLifecycleManager(database_url) as manager:
        [claude] = (await manager.list_sessions(external_id=CLAUDE_ID))["sessions"]
        [child] = (await manager.list_sessions(external_id="agent-7f3a"))["sessions"]
        idle = await manager.list_sessions(activity="idle")
        log = await manager.store.read(lambda tx: tx.all("SELECT payload FROM events"))
    assert (claude["status"], claude["activity"]) == ("active", "idle")
    assert claude["activity_at"] is not None
    assert [s["session_id"] for s in idle["sessions"]] == [claude["session_id"]]
    assert (child["shell_type"], child["parent_session_id"]) == (
        "ClaudeCodeSubagent",
        claude["session_id"],
    )
    assert (child["status"], child["end_reason"]) == ("ended", "subagent_stop")
    assert child["start_metadata"]["agent_type"] == "Explore"
    assert all(PROMPT not in str(row["payload"]) for row in log)
    return claude


async def test_a_claude_session_live_through_the_command_hook(tmp_path: Path) -> None:
    start = payload(
        "SessionStart", source="startup", model="claude-opus-4-1", permission_mode="default"
    )
    said = hook(tmp_path, start)
    assert said.startswith("tracked claude-code-")
    for body in conversation():
        said = hook(tmp_path, body)
        assert "not recorded" not in said and "no session" not in said, said
    claude = await check_conversation(f"sqlite:///{tmp_path / 'claude.db'}")
    assert claude["start_metadata"] == {
        "external_id": CLAUDE_ID,
        "source": "startup",
        "transcript_path": f"/home/dev/.claude/projects/-srv-app/{CLAUDE_ID}.jsonl",
        "model": "claude-opus-4-1",
        "permission_mode": "default",
    }
    said = hook(tmp_path, payload("StopFailure", error="rate_limit"))
    assert said.startswith("failing: ")
    [claude] = await claude_sessions(tmp_path)
    assert claude["activity"] == "failing"
    said = hook(tmp_path, payload("SessionEnd", reason="prompt_input_exit"))
    [claude] = await claude_sessions(tmp_path)
    assert (claude["status"], claude["end_reason"]) == ("ended", "prompt_input_exit")
    said = hook(tmp_path, payload("SessionStart", source="fork"))  # links like resume
    ended, forked = await claude_sessions(tmp_path)
    assert forked["previous_session_id"] == ended["session_id"]


async def test_claude_http_hooks_with_a_write_only_token(tmp_path: Path) -> None:
    import httpx2

    database_url = f"sqlite:///{tmp_path / 'claude.db'}"
    with secured_server(tmp_path) as (base, token):
        # SessionStart is a command hook in Claude Code; the rest can be HTTP hooks.
        options = ("--server-url", f"{base}/mcp", "--token", token)
        hook(tmp_path, payload("SessionStart", source="startup"), *options)
        url = f"{base}/hooks/claude-code"
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx2.post(url, json=conversation()[0]).status_code == 401
        for body in conversation():
            answer = httpx2.post(url, json=body, headers=auth)
            assert (answer.status_code, answer.json()) == (200, {})
        await check_conversation(database_url)
        assert httpx2.post(url, content=b"{oops", headers=auth).status_code == 400
        end = payload("SessionEnd", reason="logout")
        assert httpx2.post(url, json=end, headers=auth).json() == {}
    [claude] = await claude_sessions(tmp_path)
    assert (claude["status"], claude["end_reason"]) == ("ended", "logout")


async def test_the_command_hook_against_a_server_with_a_write_only_token(
    tmp_path: Path,
) -> None:
    """The whole conversation through the command hook (one POST each to the server's
    hook endpoint): the same states, activity and links as in-process, and the start's
    pid is the process that ran the hook."""
    with secured_server(tmp_path) as (base, token):
        options = ("--server-url", f"{base}/mcp", "--token", token)
        said = hook(tmp_path, payload("SessionStart", source="startup"), *options)
        assert said.startswith("tracked claude-code-"), said
        for body in conversation():
            said = hook(tmp_path, body, *options)
            assert "not recorded" not in said and "no session" not in said, said
        claude = await check_conversation(f"sqlite:///{tmp_path / 'claude.db'}")
        no_token = ("--server-url", f"{base}/mcp")
        said = hook(tmp_path, payload("SessionEnd", reason="logout"), *no_token)
        assert "credentials refused" in said and "spooled the end" in said  # said, and kept
    assert claude["pid"] == os.getpid()
    assert claude["hostname"] == socket.gethostname()
    assert [r["payload"]["hook_event_name"] for r in spooled(tmp_path / "spool.db")] == [
        "SessionEnd"
    ]


async def test_a_hook_end_waits_behind_its_spooled_start(tmp_path: Path) -> None:
    """A start spooled while the server was down is delivered before the end that
    follows it, so the end finds its session."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    said = hook(tmp_path, payload("SessionStart", source="startup"), "--server-url", url)
    assert "spooled" in said
    with http_server(f"sqlite:///{tmp_path / 'claude.db'}", port=port):
        said = hook(tmp_path, payload("SessionEnd", reason="logout"), "--server-url", url)
    assert f"ended Claude session {CLAUDE_ID}" in said, said
    [session] = await sessions(tmp_path)
    assert (session["status"], session["end_reason"]) == ("ended", "logout")
    assert spooled(tmp_path / "spool.db") == []


def test_a_hung_server_cannot_hold_the_hook(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: every hook call still
    returns within Claude Code's budget, and the start and end are kept."""
    import socket

    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        url = f"http://127.0.0.1:{black_hole.getsockname()[1]}/mcp"
        for body in (payload("SessionStart"), payload("Stop"), payload("SessionEnd")):
            said = hook(tmp_path, body, "--server-url", url)
            assert "tracked" not in said and "ended" not in said  # it says the truth
    kept = [r["payload"]["hook_event_name"] for r in spooled(tmp_path / "spool.db")]
    assert kept == ["SessionStart", "Stop", "SessionEnd"]  # activity is kept too, in order


def test_a_malformed_setting_never_fails_the_hook(tmp_path: Path) -> None:
    """Claude Code sees exit 0 whatever the environment holds; a setting the hook does
    not use does not stop it, and one it uses is named on stderr."""
    cases = [
        ([], {"SESSION_BUDDY_RETENTION": "bogus"}, "no session for Claude session"),
        (["--server-url", "http://127.0.0.1:9/mcp"], {"SESSION_BUDDY_SPOOL_MAX": "x"}, "SPOOL_MAX"),
        (["--no-such-flag"], {}, "session-buddy hook: "),
        ([], {"SESSION_BUDDY_TOKEN_FILE": "/nonexistent"}, "cannot read the token file"),
    ]
    for args, setting, said in cases:
        done = subprocess.run(
            [sys.executable, "-m", "session_buddy", "hook", "claude-code", *args],
            input=json.dumps(payload("Stop")),
            env=hook_env(tmp_path) | setting,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.returncode == 0, done.stderr
        assert said in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
