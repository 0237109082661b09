"""The Claude Code hook relay, for real: hooks run as Claude Code runs them (`sh -c`),
relays are real processes on real Unix sockets, killed, stopped and outlived."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from mcp_helpers import http_server, run_cli
from session_buddy.client import hook_relay

SESSION_BUDDY = str(Path(sys.executable).with_name("session-buddy"))
CLAUDE_ID = "5d1e0c7a-2b3f-4a69-8c0d-1e2f3a4b5c6d"


class Store:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "sessions.db"
        self.url = f"sqlite:///{self.path}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        self.env |= {"SESSION_BUDDY_DATABASE_URL": self.url}
        self.env |= {"SESSION_BUDDY_SPOOL": str(folder / "spool.db")}

    def hook(self, event: str, *flags: str, **extra: Any) -> str:
        payload = json.dumps(
            {"session_id": CLAUDE_ID, "cwd": "/srv", "hook_event_name": event} | extra
        )
        done = subprocess.run(
            ["sh", "-c", " ".join([SESSION_BUDDY, "hook", "claude-code", *flags])],
            input=payload,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0
        return done.stderr

    def socket(self, destination: str | None = None) -> Path:
        saved = os.environ.copy()
        os.environ.update(self.env)
        try:
            return Path(hook_relay.socket_path(destination or self.url))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def relay_pid(self, other_than: int | None = None) -> int:
        """The pid of the relay that serves this store (not `other_than`, a dead one)."""
        lock = Path(f"{self.socket()}.lock")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = lock.read_text().strip() if lock.exists() else ""
            if self.socket().exists() and pid.isdigit() and int(pid) != other_than:
                return int(pid)
            time.sleep(0.05)
        raise AssertionError("no relay answers")

    def log(self) -> list[tuple[str, str, str | None]]:
        with sqlite3.connect(self.path) as db:
            rows = db.execute("SELECT event_type, outcome, event_id FROM events ORDER BY id")
            return list(rows)

    def activity(self) -> str:
        with sqlite3.connect(self.path) as db:
            return str(db.execute("SELECT activity FROM sessions").fetchone()[0])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield Store(tmp_path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def test_the_first_hook_starts_a_relay_that_answers_the_next(store: Store) -> None:
    assert "tracked" in store.hook("SessionStart", source="startup")
    pid = store.relay_pid()
    assert store.socket().is_socket()
    assert store.socket().parent.stat().st_mode & 0o777 == 0o700
    for event in ("UserPromptSubmit", "Stop", "UserPromptSubmit", "Stop"):
        store.hook(event)
    assert store.activity() == "idle"
    assert [kind for kind, _, _ in store.log()] == ["session_start"] + ["heartbeat"] * 4
    assert store.relay_pid() == pid and alive(pid)  # one relay, still there


def test_a_killed_relay_loses_nothing_and_is_replaced(store: Store) -> None:
    store.hook("SessionStart", source="startup")
    first = store.relay_pid()
    os.kill(first, signal.SIGKILL)
    assert "working" in store.hook("UserPromptSubmit")  # delivered by the hook itself
    assert alive(store.relay_pid(other_than=first))
    assert "idle" in store.hook("Stop")
    assert [kind for kind, _, _ in store.log()] == ["session_start", "heartbeat", "heartbeat"]


def test_a_hung_relay_costs_one_deadline_and_is_stopped(store: Store) -> None:
    store.hook("SessionStart", source="startup")
    pid = store.relay_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        said = store.hook("UserPromptSubmit")
        assert time.monotonic() - began < 1.5 and "spooled the activity" in said
        assert not alive(pid)  # the hook stopped it
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert "idle" in store.hook("Stop")  # behind the spooled one, by a new relay or not
    log = [(kind, outcome) for kind, outcome, _ in store.log()]
    assert log == [
        ("session_start", "tracked"),
        ("heartbeat", "recorded"),
        ("heartbeat", "recorded"),
    ]
    assert store.activity() == "idle"


def test_a_relay_leaves_when_idle(store: Store) -> None:
    store.env["SESSION_BUDDY_RELAY_IDLE"] = "1"
    store.hook("SessionStart", source="startup")
    pid = store.relay_pid()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid) and not store.socket().exists()


def test_a_socket_folder_others_may_enter_is_never_used(store: Store, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    shared = runtime / f"session-buddy-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o755)
    store.env["XDG_RUNTIME_DIR"] = str(runtime)
    assert "tracked" in store.hook("SessionStart", source="startup")
    assert "working" in store.hook("UserPromptSubmit")
    time.sleep(0.5)
    assert list(shared.iterdir()) == []  # no relay, no socket: the hook writes itself


def test_a_store_file_replaced_under_a_relay_gets_the_next_event(store: Store) -> None:
    store.hook("SessionStart", source="startup")
    store.relay_pid()
    store.hook("Stop")  # through the relay, which keeps its connection open
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    store.env["SESSION_BUDDY_RELAY_IDLE"] = "0"  # this hook makes a new file itself
    assert "tracked" in store.hook("SessionStart", source="startup")
    del store.env["SESSION_BUDDY_RELAY_IDLE"]
    assert "working" in store.hook("UserPromptSubmit")  # through the relay again
    assert [kind for kind, _, _ in store.log()] == ["session_start", "heartbeat"]


def test_hooks_to_a_server_go_through_a_relay_too(store: Store, tmp_path: Path) -> None:
    with http_server(f"sqlite:///{tmp_path / 'server.db'}") as (base, _):
        server = ("--server-url", f"{base}/mcp")
        assert "tracked" in store.hook("SessionStart", *server, source="startup")
        deadline = time.monotonic() + 10
        while not store.socket(f"{base}/mcp").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.socket(f"{base}/mcp").is_socket()
        assert "working" in store.hook("UserPromptSubmit", *server)
        assert "idle" in store.hook("Stop", *server)
        listed = run_cli(f"sqlite:///{tmp_path / 'server.db'}", "sessions", "list", "--json")
    [session] = json.loads(listed.stdout)["sessions"]
    assert session["activity"] == "idle" and not store.path.exists()
