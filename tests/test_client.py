"""The shell client: real child processes report to a real server (or spool when it is
down), the Claude Code hook, and the `emit` / `spool` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from mcp_helpers import free_port, http_server, run_cli, server_env, spooled
from session_buddy.core import SessionLifecycleManager

CHILD = textwrap.dedent(
    """
    import sys, time
    from session_buddy.client import SessionEventEmitter

    mode, server_url, server_up = sys.argv[1], sys.argv[2], sys.argv[3] == "up"
    emitter = SessionEventEmitter("e2e", shell_type="E2EShell", server_url=server_url)
    emitter.install()
    deadline = time.monotonic() + 10
    while server_up and emitter.session_id is None and time.monotonic() < deadline:
        time.sleep(0.01)
    print(emitter.session_id or "spooled", flush=True)
    time.sleep(0.3)
    if mode == "crash":
        raise RuntimeError("boom")
    if mode in ("sigterm", "sigkill"):
        time.sleep(60)
    sys.exit(0)
    """
)


def child_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return server_env(database_url, SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db"))


def run_child(
    tmp_path: Path, mode: str, server_url: str, database_url: str, *, server_up: bool = True
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, server_url, "up" if server_up else "down"],
        env=child_env(tmp_path, database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


async def stored(database_url: str, session_id: str) -> dict[str, Any]:
    async with SessionLifecycleManager(database_url) as manager:
        record = await manager.get_session(session_id)
    assert record is not None, session_id
    return record


async def test_emitter_records_every_way_a_shell_can_leave(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'e2e.db'}"
    with http_server(database_url) as (base, _):
        url = f"{base}/mcp"
        outcomes = {}
        for mode in ("clean", "crash", "sigterm", "sigkill"):
            process, session_id = run_child(tmp_path, mode, url, database_url)
            assert session_id.startswith("e2e-"), process.stderr.read() if process.stderr else ""
            # The child printed its id after install(): its SIGTERM handler is in place.
            if mode == "sigterm":
                process.send_signal(signal.SIGTERM)
            if mode == "sigkill":
                process.kill()
            process.wait(timeout=20)
            outcomes[mode] = (session_id, process.returncode)
        assert outcomes["clean"][1] == 0
        assert outcomes["crash"][1] == 1
        assert outcomes["sigterm"][1] == -signal.SIGTERM
        assert outcomes["sigkill"][1] == -signal.SIGKILL
        reap = run_cli(database_url, "reap", "--json")
        assert json.loads(reap.stdout)["abandoned"] == [outcomes["sigkill"][0]]
    clean = await stored(database_url, outcomes["clean"][0])
    assert (clean["status"], clean["end_reason"], clean["exit_code"]) == ("ended", "exit", 0)
    assert 0.3 <= clean["duration_seconds"] < 10
    crash = await stored(database_url, outcomes["crash"][0])
    assert (crash["status"], crash["end_reason"]) == ("crashed", "exception:RuntimeError: boom")
    term = await stored(database_url, outcomes["sigterm"][0])
    assert (term["status"], term["end_reason"], term["exit_code"]) == (
        "crashed",
        "signal:SIGTERM",
        143,
    )
    killed = await stored(database_url, outcomes["sigkill"][0])
    assert killed["status"] == "abandoned"
    assert killed["end_reason"].startswith(f"process_gone (pid {killed['pid']} exited; ")
    assert killed["pid"] != os.getpid() and killed["shell_type"] == "E2EShell"


async def test_sessions_survive_a_server_outage_through_the_spool(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'outage.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"  # nothing listens here yet
    began = time.monotonic()
    for mode in ("clean", "crash", "clean"):
        process, printed = run_child(tmp_path, mode, url, database_url, server_up=False)
        assert printed == "spooled"
        process.wait(timeout=20)
    assert time.monotonic() - began < 15  # shells were not held up by the dead server
    kinds = [record["kind"] for record in spooled(tmp_path / "spool.db")]
    assert kinds == ["start", "end", "start", "end", "start", "end"]
    flush = [sys.executable, "-m", "session_buddy", "spool", "flush", "--server-url", url]
    env = child_env(tmp_path, database_url)
    down = subprocess.run(flush, env=env, capture_output=True, text=True)
    assert down.returncode != 0 and "unreachable" in down.stderr
    # The server comes back on the same port: replay twice (the second finds nothing).
    with http_server(database_url, port=port):
        for _ in range(2):
            done = subprocess.run(flush, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    assert spooled(tmp_path / "spool.db") == []
    async with SessionLifecycleManager(database_url) as manager:
        page = await manager.list_sessions(component_name="e2e")
    sessions = page["sessions"]
    assert len(sessions) == 3
    assert sorted(s["status"] for s in sessions) == ["crashed", "ended", "ended"]
    for session in sessions:
        assert 0.3 <= session["duration_seconds"] < 10  # event time, not replay time


def test_a_hung_server_cannot_hold_a_shell_at_exit(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: the shell still exits
    within the 2 s budget (plus interpreter start-up), and the events are spooled."""
    import socket

    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)
    url = f"http://127.0.0.1:{black_hole.getsockname()[1]}/mcp"
    try:
        process, printed = run_child(tmp_path, "clean", url, "sqlite:///unused.db", server_up=False)
        assert printed == "spooled"
        # A server that never answers does not keep the shell from exiting (how fast:
        # benchmarks/bench_emitter.py).
        assert process.wait(timeout=20) == 0
    finally:
        black_hole.close()
    kinds = [record["kind"] for record in spooled(tmp_path / "spool.db")]
    assert kinds == ["start", "end"]


async def test_periodic_heartbeats_keep_last_seen_moving(tmp_path: Path) -> None:
    from session_buddy.client import SessionEventEmitter, Spool

    database_url = f"sqlite:///{tmp_path / 'beats.db'}"
    emitter = SessionEventEmitter(
        "beating",
        database_url=database_url,
        heartbeat_interval=0.2,
        spool=Spool(tmp_path / "spool.db"),
    )
    with emitter:
        first = (await stored(database_url, emitter.session_id or ""))["last_seen_at"]
        for _ in range(200):  # until a heartbeat from the emitter's thread lands (<= 20 s)
            later = (await stored(database_url, emitter.session_id or ""))["last_seen_at"]
            if later > first:
                break
            time.sleep(0.1)
        assert later > first
    assert (await stored(database_url, emitter.session_id or ""))["status"] == "ended"
