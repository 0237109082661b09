"""`session-buddy watch`: what needs someone first, then what runs, then what ended
badly; live in a real terminal (tmux), refreshed in place."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import end_event, start_event
from mcp_helpers import run_cli, server_env
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionTracker


def iso(seconds_ago: float) -> str:
    then = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return then.isoformat().replace("+00:00", "Z")


async def sessions(url: str) -> dict[str, str]:
    """One session in each state that watch sorts."""
    async with SessionLifecycleManager(url) as manager:
        tracker = SessionTracker(manager)
        made = {}
        for name, ago in (("waits-long", 300), ("waits", 30), ("runs", 60), ("dies", 90)):
            started = await tracker.handle_session_start(
                start_event(component_name=name, timestamp=iso(ago), pid=None)
            )
            made[name] = str(started.session_id)
        for name, ago in (("waits-long", 200), ("waits", 20)):
            await manager.heartbeat(made[name], iso(ago), activity="waiting_for_input")
        await tracker.handle_session_end(end_event(made["dies"], iso(1), exit_code=9))
        return made


def test_once_shows_who_waits_longest_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    made = asyncio.run(sessions(url))
    shown = run_cli(url, "watch", "--once", COLUMNS="120").stdout
    lines = [line.rstrip() for line in shown.splitlines()]
    assert lines[0].startswith("2 need you · 1 running · 1 ended badly in the last day")
    order = [next(i for i, line in enumerate(lines) if made[name] in line) for name in made]
    waits_long, waits, runs, dies = order
    assert lines.index("needs you") < waits_long < waits < lines.index("running") < runs
    assert lines.index("ended badly") < dies
    assert "waiting_for_input" in lines[waits_long] and "3m 20s" in lines[waits_long]
    assert "crashed exit_code 9" in lines[dies]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux (`make claude` installs it)")
def test_live_in_a_terminal_refreshes_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(sessions(url))
    tmux = ["tmux", "-L", f"watch-{uuid.uuid4().hex[:8]}"]
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in server_env(url).items())
    command = f"env -i {env} {sys.executable} -m session_buddy watch --interval 0.3"
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "30", command], check=True)

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=True
        ).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 15
        while text not in (shown := screen()):
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        return shown

    try:
        wait_for("2 need you · 1 running")
        run_cli(url, "emit", "start", "--component", "newcomer")
        shown = wait_for("newcomer-")
        assert shown.count("need you ·") == 1  # the same screen, redrawn: not scrolled
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
