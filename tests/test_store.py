"""Opening stores: URLs, the default location, schema versions, and settings."""

from __future__ import annotations

import asyncio
import platform
import sqlite3
import time
from pathlib import Path

import pytest

from session_buddy.core import SessionLifecycleManager
from session_buddy.core.store import SQLiteStore, open_store
from session_buddy.core.store.migrations import LATEST_VERSION


def pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


async def test_default_store_lives_under_xdg_data_home(isolated_default_store: Path) -> None:
    async with SessionLifecycleManager() as manager:
        assert manager.database_url == f"sqlite:///{isolated_default_store}"
    assert isolated_default_store.exists()
    assert pragma(isolated_default_store, "journal_mode") == "wal"


async def test_environment_variable_names_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "nested" / "from-env.db"
    monkeypatch.setenv("SESSION_BUDDY_DATABASE_URL", f"sqlite:///{target}")
    async with SessionLifecycleManager() as manager:
        assert manager.database_url == f"sqlite:///{target}"
    assert target.exists()


async def test_relative_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///relative.db")
    await store.close()
    assert (tmp_path / "relative.db").exists()


async def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    database = tmp_path / "m.db"
    for _ in range(2):
        store = open_store(f"sqlite:///{database}")
        await store.close()
    connection = sqlite3.connect(database)
    try:
        versions = connection.execute("SELECT version FROM schema_migrations").fetchall()
    finally:
        connection.close()
    assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "future.db"
    connection = sqlite3.connect(database)
    connection.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_us INT)"
    )
    connection.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    connection.commit()
    connection.close()
    with pytest.raises(RuntimeError, match="newer than this session-buddy"):
        SQLiteStore(str(database))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "Invalid database URL"),
        ("mysql://root@localhost/db", "Unsupported database URL scheme"),
        ("sqlite://", "Invalid SQLite URL"),
        ("sqlite:///:memory:", "needs a file path"),
    ],
)
def test_bad_urls_are_explained(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


async def test_synchronous_mode_is_full_by_default_and_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(str(tmp_path / "a.db"))
    assert await store.read(lambda tx: tx.one("PRAGMA synchronous")[0]) == 2  # type: ignore[index]
    await store.close()
    with pytest.raises(ValueError, match="Invalid SQLite synchronous mode"):
        SQLiteStore(str(tmp_path / "b.db"), synchronous="SOMETIMES")


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "c.db"))
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.write(lambda tx: tx.run("SELECT 1"))


async def test_a_failing_write_does_not_take_its_batch_down(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "d.db"))
    await store.write(lambda tx: tx.run("CREATE TABLE t (v INTEGER NOT NULL)"))

    results = await asyncio.gather(
        *(
            store.write(lambda tx, v=v: tx.run("INSERT INTO t (v) VALUES ($1)", (v,)))  # type: ignore[misc]
            for v in (1, 2, None, 4)
        ),
        return_exceptions=True,
    )
    assert [isinstance(r, sqlite3.IntegrityError) for r in results] == [False, False, True, False]
    rows = await store.read(lambda tx: tx.all("SELECT v FROM t ORDER BY v"))
    assert [r["v"] for r in rows] == [1, 2, 4]
    await store.close()


async def test_a_version_1_database_upgrades_with_its_sessions(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from session_buddy.core.store import migrations

    with monkeypatch.context() as old_code:
        old_code.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        old_code.setattr(migrations, "LATEST_VERSION", 1)
        store = open_store(database_url)
        await store.write(
            lambda tx: tx.run(
                "INSERT INTO sessions (session_id, event_id, component_name, shell_type, pid, "
                "hostname, username, home, cwd, python_version, platform, status, started_us, "
                "last_seen_us, received_us, start_metadata) VALUES ('old-20260101-000000', "
                "'e-1', 'old', 'Shell', 42, $1, 'u', '/h', '/c', '3.11', 'Linux', 'active', "
                "$2, $2, $2, '{}')",
                (platform.node(), time.time_ns() // 1000),  # here and now: not stale
            )
        )
        await store.close()
    async with SessionLifecycleManager(database_url) as manager:
        record = await manager.get_session("old-20260101-000000")
        assert record is not None
        assert (record["pid"], record["status"], record["activity"]) == (42, "active", None)
        versions = await manager.store.read(
            lambda tx: tx.all("SELECT version FROM schema_migrations ORDER BY version")
        )
        assert [row["version"] for row in versions] == list(range(1, LATEST_VERSION + 1))
        await manager.store.write(
            lambda tx: tx.run(
                "UPDATE sessions SET pid = NULL WHERE session_id = 'old-20260101-000000'"
            )
        )
        assert (await manager.get_session("old-20260101-000000") or {})["pid"] is None
        assert await manager.reap() == []  # a session without a pid is never reaped by pid


async def test_the_activity_filter_reads_its_partial_index(tmp_path: Path) -> None:
    """Sessions without an activity (most of them) cost that index nothing on insert,
    and list_sessions(activity=...) still reads it."""
    from session_buddy.core.records import RECORD_COLUMNS

    store = open_store(f"sqlite:///{tmp_path / 'plan.db'}")
    plan = await store.read(
        lambda tx: tx.all(
            f"EXPLAIN QUERY PLAN SELECT {RECORD_COLUMNS} FROM sessions WHERE activity = $1 "
            "ORDER BY started_us DESC, session_id DESC LIMIT 51",
            ("idle",),
        )
    )
    await store.close()
    assert any("USING INDEX sessions_by_activity" in row["detail"] for row in plan)
