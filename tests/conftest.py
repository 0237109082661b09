"""Shared fixtures: real SQLite files in a temporary folder, and event builders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest

from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionEndEvent, SessionStartEvent, SessionTracker

POSTGRES_ENV = "SESSION_BUDDY_TEST_POSTGRES_URL"


@pytest.fixture(scope="session", autouse=True)
def hook_relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Claude Code hook relays that tests start have their sockets here, and are
    stopped when the tests end."""
    runtime = tmp_path_factory.mktemp("run")
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    yield runtime
    for lock in runtime.glob("session-buddy-*/*.lock"):
        pid = lock.read_text().strip()
        if pid.isdigit():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)


def with_search_path(url: str, schema: str) -> str:
    """The same PostgreSQL URL, with every connection working in `schema`."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards; yields its URL."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL cases need {POSTGRES_ENV}, e.g. postgresql://postgres@127.0.0.1/test"
        )
    schema = f"sb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store contract test runs on a real SQLite file and a real PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(autouse=True)
def isolated_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default store at a temporary folder so no test touches ~/.local/share."""
    data_home = tmp_path / "xdg-data"
    monkeypatch.delenv("SESSION_BUDDY_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    return data_home / "session-buddy" / "sessions.db"


@pytest.fixture
async def manager(database_url: str) -> AsyncIterator[SessionLifecycleManager]:
    async with SessionLifecycleManager(database_url) as opened:
        yield opened


@pytest.fixture
def tracker(manager: SessionLifecycleManager) -> SessionTracker:
    return SessionTracker(manager)


def start_payload(**overrides: Any) -> dict[str, Any]:
    """A valid start event as a client sends it, with fields replaced as given."""
    payload: dict[str, Any] = {
        "event_version": "1.0",
        "event_id": str(uuid.uuid4()),
        "event_type": "session_start",
        "component_name": "mahavishnu",
        "shell_type": "MahavishnuShell",
        "timestamp": "2026-02-06T12:34:56.789Z",
        "pid": 12345,
        "user": {"username": "john", "home": "/home/john"},
        "hostname": "server01",
        "environment": {
            "python_version": "3.13.0",
            "platform": "Linux-6.5.0-x86_64",
            "cwd": "/home/john/projects/mahavishnu",
        },
        "metadata": {},
    }
    payload.update(overrides)
    return payload


def start_event(**overrides: Any) -> SessionStartEvent:
    return SessionStartEvent.model_validate(start_payload(**overrides))


def end_event(session_id: str, timestamp: str, **metadata: Any) -> SessionEndEvent:
    return SessionEndEvent(session_id=session_id, timestamp=timestamp, metadata=metadata)


async def event_log(manager: SessionLifecycleManager) -> list[dict[str, Any]]:
    """The stored event log, oldest first."""
    rows = await manager.store.read(lambda tx: tx.all("SELECT * FROM events ORDER BY id"))
    return [dict(row) for row in rows]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem of its own (tmpfs; needs root, as CI has)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Take every byte left on `disk` with one file; returns it (unlink it to free them)."""
    filler = disk / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:
            pass
    return filler
