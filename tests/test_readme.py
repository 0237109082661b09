"""The README as a new user meets it: its commands, run verbatim from a fresh clone with
an empty HOME, then the Python example and the CLI examples on the same store."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_helpers import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def block(marker: str, language: str = "sh") -> str:
    """The code block that follows `<!-- marker -->` in the README."""
    found = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", README.read_text(), re.S)
    assert found, f"no block marked {marker!r}"
    return found[1]


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [example] = [text for text in blocks if "asyncio.run(main())" in text]
    return example


def person(home: Path) -> dict[str, str]:
    """A new user's environment: an empty HOME, none of session-buddy's settings."""
    keep = ("PATH", "LANG", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return env | {"HOME": str(home), "COLUMNS": "80"}


def run(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to clone")
def test_a_new_user_follows_the_readme(tmp_path: Path) -> None:
    home, clone = tmp_path / "home", tmp_path / "session-buddy"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = person(home)
    installed = run(block("quick start"), clone, env)
    assert re.search(r"session-buddy, version \S+", installed)
    env["PATH"] = f"{home}/.local/share/session-buddy/venv/bin:{env['PATH']}"
    first = run(block("first session"), clone, env)
    [session_id] = set(re.findall(r"backup-\d{8}-\d{6}", first))
    assert (home / ".local/share/session-buddy/sessions.db").is_file()
    example = subprocess.run(
        [f"{home}/.local/share/session-buddy/venv/bin/python", "-c", python_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert example.returncode == 0, example.stderr
    assert example.stdout.splitlines()[0] == "mahavishnu-20260206-123456 ended 4211.101"
    after = run(block("after the python example"), clone, env)
    assert "mahavishnu-20260206-123456" in after and "ended" in after
    assert "session_start" in after and "session_end" in after
    listed = run("session-buddy sessions list", clone, env)
    assert session_id in listed and "mahavishnu-20260206-123456" in listed


def test_readme_python_example_runs_on_the_default_store(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", python_example()],
        cwd=tmp_path,
        env=person(tmp_path) | {"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "mahavishnu-20260206-123456 ended 4211.101"
    assert (tmp_path / ".local/share/session-buddy/sessions.db").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    home, clone = tmp_path / "home", tmp_path / "session-buddy"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = free_port()
    serving = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=clone,
        env=person(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", serving, timeout=300)  # installs first
        installed = subprocess.run(
            [str(clone / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.lower()
        assert "apprise==" in installed  # alert channels: serving needs them
        assert "opentelemetry-sdk==" in installed  # and the export of sessions
        for tool in ("mypy", "ruff", "playwright", "pytest", "hypothesis"):
            assert f"\n{tool}==" not in f"\n{installed}", tool
    finally:
        os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(timeout=30)
