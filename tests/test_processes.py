"""Which process runs a hook: the walk past shell wrappers, through /proc and through ps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from session_buddy import processes

WALK = textwrap.dedent(
    """
    import sys
    from session_buddy import processes
    if sys.argv[1] == "ps":  # as on macOS, where there is no /proc
        processes._linux_parent = processes._ps_parent
    print(processes.launcher_pid())
    """
)


@pytest.mark.parametrize("reader", ["proc", "ps"])
@pytest.mark.parametrize(
    "wrap",
    [
        lambda command: ["sh", "-c", f"{command}; true"],  # dash: no exec of the last command
        lambda command: ["bash", "-c", command],
        lambda command: ["bash", "-lc", f"sh -c '{command}; true'; true"],  # nested wrappers
    ],
    ids=["sh -c", "bash -c", "bash -lc + sh -c"],
)
def test_the_walk_finds_the_process_that_ran_the_shell(
    reader: str, wrap: object, tmp_path: Path
) -> None:
    script = tmp_path / "walk.py"
    script.write_text(WALK)
    command = f"{sys.executable} {script} {reader}"
    found = subprocess.run(
        wrap(command),  # type: ignore[operator]
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == str(os.getpid())


def test_what_runs_a_command_string() -> None:
    assert processes._runs_a_command_string(["/bin/sh", "-c", "x"])
    assert processes._runs_a_command_string(["-bash", "-lc", "x"])
    assert processes._runs_a_command_string(["busybox", "sh", "-c", "x"])
    assert not processes._runs_a_command_string(["bash", "script.sh"])
    assert not processes._runs_a_command_string(["python", "-c", "x"])
    assert not processes._runs_a_command_string([])


def test_no_launcher_below_init() -> None:
    assert processes.launcher_pid(start=1) is None
