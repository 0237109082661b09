"""Shell integration in real interactive bash, zsh and fish under a terminal (tmux):
`eval "$(session-buddy init SHELL)"` makes the shell one session, which heartbeats while
it lives (idle or not), ends cleanly at `exit` after a failed command, and is abandoned
with its evidence when the shell is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mcp_helpers import run_cli, server_env

COMMAND = str(Path(sys.executable).parent / "session-buddy")
SHELLS = {
    "bash": (["bash", "--norc", "--noprofile", "-i"], f'eval "$({COMMAND} init bash)"'),
    "zsh": (["zsh", "-f", "-i"], f'eval "$({COMMAND} init zsh)"'),
    "fish": (["fish", "--no-config", "-i"], f"{COMMAND} init fish | source"),
    # A Python admin shell: the emitter's install(), in a real REPL.
    "python": (
        [sys.executable, "-i", "-q"],
        "from session_buddy.client import SessionEventEmitter; "
        "emitter = SessionEventEmitter('admin', 'PythonShell').install()",
    ),
}

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Terminal:
    """One interactive shell in a tmux pane of its own."""

    def __init__(self, shell: str, url: str, folder: Path, **env: str) -> None:
        argv, self.init = SHELLS[shell]
        if shutil.which(argv[0]) is None:
            pytest.skip(f"needs {argv[0]} (apt install {argv[0]})")
        self.tmux = ["tmux", "-L", f"sb-{uuid.uuid4().hex[:8]}"]
        environment = server_env(url, XDG_RUNTIME_DIR=str(folder), HOME=str(folder), **env)
        exports = [f"{key}={value}" for key, value in environment.items()]
        subprocess.run(
            [
                *self.tmux,
                "new-session",
                "-d",
                "-x",
                "150",
                "-y",
                "40",
                "env",
                "-i",
                *exports,
                *argv,
            ],
            check=True,
        )
        self.url = url

    def type(self, line: str) -> None:
        subprocess.run([*self.tmux, "send-keys", line, "Enter"], check=True)

    def shell_pid(self) -> int:
        shown = subprocess.run(
            [*self.tmux, "display-message", "-p", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(shown.stdout)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


def sessions(url: str) -> list[dict[str, Any]]:
    """The stored sessions; none while the store is not made yet."""
    listed = run_cli(url, "sessions", "list", "--json", check=False)
    return list(json.loads(listed.stdout)["sessions"]) if listed.returncode == 0 else []


def wait_for(url: str, check: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not check(found := sessions(url)):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


@contextmanager
def started(shell: str, folder: Path) -> Iterator[tuple[Terminal, str, dict[str, Any]]]:
    """A shell (heartbeats every second) once its session is stored: the terminal, the
    store's URL and the session as it started."""
    url = f"sqlite:///{folder / 'sessions.db'}"
    terminal = Terminal(shell, url, folder, SESSION_BUDDY_HEARTBEAT="1")
    try:
        terminal.type(terminal.init)
        [session] = wait_for(url, lambda found: len(found) == 1)
        yield terminal, url, session
    finally:
        terminal.close()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_shell_is_one_session_that_beats_and_ends_cleanly(shell: str, tmp_path: Path) -> None:
    with started(shell, tmp_path) as (terminal, url, first):
        assert first["status"] == "active" and first["shell_type"] == shell
        assert first["component_name"] == "shell" and first["pid"] == terminal.shell_pid()
        wait_for(url, lambda found: found[0]["last_seen_at"] > first["last_seen_at"])
        terminal.type("true")  # a prompt
        terminal.type("false; exit")
        [ended] = wait_for(url, lambda found: found[0]["status"] != "active")
        assert ended["status"] == "ended" and ended["end_reason"] == "exit"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_killed_shell_is_abandoned_with_evidence(shell: str, tmp_path: Path) -> None:
    with started(shell, tmp_path) as (terminal, url, _):
        pid = terminal.shell_pid()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        reaped = json.loads(run_cli(url, "reap", "--json").stdout)
        [record] = sessions(url)
        assert reaped["abandoned"] == [record["session_id"]]
        assert record["status"] == "abandoned"
        assert record["end_reason"].startswith(f"process_gone (pid {pid} exited")


def test_an_idle_shell_stays_active_past_abandon_after(tmp_path: Path) -> None:
    with started("bash", tmp_path) as (_, url, _):
        for _ in range(4):  # no prompt for 6 s; silent sessions go after 3 s
            time.sleep(1.5)
            reaped = run_cli(url, "reap", "--json", SESSION_BUDDY_ABANDON_AFTER="3").stdout
            assert json.loads(reaped)["abandoned"] == []
        [record] = sessions(url)
        assert record["status"] == "active"


def test_an_idle_python_repl_heartbeats_and_exits_cleanly(tmp_path: Path) -> None:
    with started("python", tmp_path) as (terminal, url, first):
        assert first["shell_type"] == "PythonShell" and first["pid"] == terminal.shell_pid()
        wait_for(url, lambda found: found[0]["last_seen_at"] > first["last_seen_at"])  # idle
        terminal.type("exit()")
        [ended] = wait_for(url, lambda found: found[0]["status"] != "active")
        assert ended["status"] == "ended"
