"""Real Claude Code (npm's @anthropic-ai/claude-code, its native binary) against the
stand-in Messages API, with the hooks that `session-buddy claude-code install` writes.

Claude Code runs without the virtualenv on PATH, as from an IDE; the tests look at what
a user sees: `sessions list`, `show`, `events` and `claude-code status`. Interactive
sessions run under tmux. `make claude` installs Claude Code; without it these skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_standin import StandIn, claude_binary, claude_environment, claude_home, stand_in_api
from mcp_helpers import free_port, http_server

CLAUDE = claude_binary()
pytestmark = pytest.mark.skipif(
    CLAUDE is None, reason="Claude Code is not installed here (`make claude` installs it)"
)
SESSION_BUDDY = str(Path(sys.executable).with_name("session-buddy"))
API_KEY = "sk-ant-stand-in-0123456789abcdefghij"


class Claude:
    """One home with Claude Code and session-buddy's hooks in it."""

    def __init__(self, home: Path, project: Path, api: StandIn) -> None:
        self.home, self.project, self.api = home, project, api
        self.env = claude_environment(home, api, API_KEY)

    def session_buddy(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [SESSION_BUDDY, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout

    def sessions(self, *filters: str) -> list[dict[str, Any]]:
        store = self.home / ".local" / "share" / "session-buddy" / "sessions.db"
        if "--server-url" not in filters and not store.exists():
            return []  # the first hook makes it
        listed = json.loads(self.session_buddy("sessions", "list", "--json", *filters))
        return list(listed["sessions"])

    def events(self, session_id: str) -> list[dict[str, Any]]:
        return list(json.loads(self.session_buddy("sessions", "events", session_id, "--json")))

    def print_mode(self, prompt: str, *flags: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(CLAUDE), "-p", prompt, *flags],
            env=self.env,
            cwd=self.project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, prompt: str, *flags: str) -> tuple[int, str]:
        claude = self.print_mode(prompt, *flags)
        out, err = claude.communicate(timeout=90)
        return claude.pid, out + err


@pytest.fixture
def claude(tmp_path: Path) -> Iterator[Claude]:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    claude_home(home, project, API_KEY)
    with stand_in_api() as api:
        yield Claude(home, project, api)


def wait_for(what: Callable[[], Any], seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {getattr(what, '__doc__', what)}")


def test_install_then_a_session_with_claudes_own_pid(claude: Claude) -> None:
    said = claude.session_buddy("claude-code", "install")
    assert "installed" in said and str(claude.home / ".claude" / "settings.json") in said
    pid, out = claude.run("Say hi")
    assert "Hi!" in out
    [session] = claude.sessions()
    assert session["pid"] == pid  # Claude Code itself, not the hook's `sh -c`
    assert (session["component_name"], session["shell_type"]) == ("claude-code", "ClaudeCode")
    assert (session["status"], session["end_reason"]) == ("ended", "other")
    assert session["platform"].startswith("Claude Code 2.") and session["python_version"] == ""
    assert session["start_metadata"]["source"] == "startup"
    kinds = [
        (e["event_type"], e["payload"].get("activity"))
        for e in claude.events(session["session_id"])
    ]
    assert kinds == [
        ("session_start", None),
        ("heartbeat", "working"),
        ("heartbeat", "idle"),
        ("session_end", None),
    ]
    status = claude.session_buddy("claude-code", "status")
    assert f"in {session['session_id']} (ended/idle)" in status and "reachable" in status


def test_failing_with_its_reason(claude: Claude) -> None:
    claude.session_buddy("claude-code", "install")
    _, out = claude.run("[[rate-limit]]")
    assert "429" in out
    [session] = claude.sessions()
    assert (session["activity"], session["activity_detail"]) == ("failing", "rate_limit")
    assert "(failing: rate_limit)" in claude.session_buddy("sessions", "list")
    shown = claude.session_buddy("sessions", "show", session["session_id"])
    assert "rate_limit" in shown


def test_a_subagent_is_a_child_session(claude: Claude) -> None:
    claude.session_buddy("claude-code", "install")
    claude.run("[[agent:Say done]]")
    sessions = {s["shell_type"]: s for s in claude.sessions()}
    parent, child = sessions["ClaudeCode"], sessions["ClaudeCodeSubagent"]
    assert child["parent_session_id"] == parent["session_id"]
    assert (child["status"], child["end_reason"]) == ("ended", "subagent_stop")
    assert child["start_metadata"]["agent_type"] == "general-purpose"
    assert parent["status"] == "ended"


def test_sigkill_leaves_an_abandoned_session_with_evidence(claude: Claude) -> None:
    claude.session_buddy("claude-code", "install")
    running = claude.print_mode("[[hold]]")
    try:
        assert claude.api.held.wait(30)
        [session] = wait_for(lambda: claude.sessions("--active"))
        assert session["pid"] == running.pid and session["activity"] == "working"
        os.kill(running.pid, signal.SIGKILL)
        running.wait(10)
    finally:
        claude.api.release()
    claude.session_buddy("reap")
    [after] = claude.sessions()
    assert after["status"] == "abandoned"
    assert str(running.pid) in after["end_reason"] and "gone" in after["end_reason"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux (`make claude` installs it)")
def test_waiting_then_working_after_the_person_approves(claude: Claude) -> None:
    claude.session_buddy("claude-code", "install")
    socket = f"sb-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    env = claude.env | {"TERM": "xterm-256color"}
    prompt = "[[bash:touch approved.txt]] [[hold]]"  # touch asks for permission
    command = f"{CLAUDE} '{prompt}'"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "160", "-y", "45", "-c", str(claude.project), command],
        env=env,
        check=True,
    )
    try:

        def waiting() -> list[dict[str, Any]]:
            """the session waits for the person"""
            return claude.sessions("--activity", "waiting_for_input")

        [session] = wait_for(waiting)
        assert not (claude.project / "approved.txt").exists()
        subprocess.run([*tmux, "send-keys", "Enter"], check=True)  # 1. Yes
        assert claude.api.held.wait(30)  # the tool ran; Claude asks the API again
        assert (claude.project / "approved.txt").exists()
        [now] = claude.sessions("--active")
        assert (now["session_id"], now["activity"]) == (session["session_id"], "working")
        claude.api.release()

        def idle() -> list[dict[str, Any]]:
            """the turn ends"""
            return claude.sessions("--activity", "idle")

        wait_for(idle)
    finally:
        claude.api.release()
        subprocess.run([*tmux, "kill-server"], check=False)


def test_server_down_then_up_every_event_delivered_in_order(claude: Claude) -> None:
    port = free_port()
    claude.session_buddy("claude-code", "install", "--server-url", f"http://127.0.0.1:{port}/mcp")
    _, out = claude.run("[[bash:true]]", "--allowedTools", "Bash")
    assert "Done." in out
    assert [record["kind"] for record in spooled(claude)] == ["hook"] * 5
    with http_server(f"sqlite:///{claude.home / 'server.db'}", port=port):
        claude.run("Say hi")  # its first hook sends the older events first
        server = ("--server-url", f"http://127.0.0.1:{port}/mcp")
        first, second = sorted(claude.sessions(*server), key=lambda s: str(s["started_at"]))
        log = json.loads(
            claude.session_buddy("sessions", "events", first["session_id"], "--json", *server)
        )
    assert (first["status"], second["status"]) == ("ended", "ended")
    kinds = [(e["event_type"], e["payload"].get("activity")) for e in log]
    assert kinds == [
        ("session_start", None),
        ("heartbeat", "working"),  # UserPromptSubmit
        ("heartbeat", "working"),  # PostToolUse
        ("heartbeat", "idle"),  # Stop
        ("session_end", None),
    ]
    assert spooled(claude) == []


def spooled(claude: Claude) -> list[dict[str, Any]]:
    return list(json.loads(claude.session_buddy("spool", "list", "--json")))


def test_uninstall_leaves_other_hooks_intact(claude: Claude) -> None:
    settings = claude.home / ".claude" / "settings.json"
    seen = claude.home / "seen.txt"
    theirs = {"type": "command", "command": f"cat >> {seen}; echo >> {seen}"}
    before = {
        "env": {"SOME_SETTING": "1"},
        "hooks": {
            "Stop": [{"hooks": [theirs]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [theirs]}],
        },
    }
    settings.write_text(json.dumps(before))
    claude.session_buddy("claude-code", "install")
    assert "nothing changed" in claude.session_buddy("claude-code", "install")
    claude.run("Say hi")
    assert len(claude.sessions()) == 1 and '"Stop"' in seen.read_text()
    said = claude.session_buddy("claude-code", "uninstall")
    assert "removed" in said and ".bak" in said
    assert json.loads(settings.read_text()) == before
    claude.run("Say hi")
    assert len(claude.sessions()) == 1  # no hook of ours ran
    assert seen.read_text().count('"Stop"') == 2  # theirs still does
