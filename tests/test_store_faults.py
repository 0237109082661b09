"""Stores under faults caused for real: a lock held by another process, a batch with a
failing job, a writer that dies, a full disk, a table dropped under a running server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import fill, postgres_schema, start_payload
from mcp_helpers import server_env
from session_buddy.app.service import SessionService
from session_buddy.app.tools import call_tool
from session_buddy.core import SessionLifecycleManager
from session_buddy.core.errors import StoreUnavailable
from session_buddy.core.store.sqlite import SQLiteStore

HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def hold_write_lock(path: Path) -> Callable[[], object]:
    """Another process takes the SQLite write lock on `path`; calling the result ends it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return lambda: holder.communicate("", timeout=10)


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds the SQLite write lock on `path` until the block ends."""
    release = hold_write_lock(path)
    try:
        yield
    finally:
        release()


async def test_readers_and_opening_do_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    database = tmp_path / "locked.db"
    url = f"sqlite:///{database}"
    async with SessionLifecycleManager(url) as manager:
        await SessionService(manager).start(start_payload())
    with write_lock_held(database):
        listed = subprocess.run(  # would wait out the 10 s busy timeout if it locked
            [sys.executable, "-m", "session_buddy", "sessions", "list", "--json"],
            env=server_env(url),
            capture_output=True,
            text=True,
            timeout=5,
        )
        assert listed.returncode == 0, listed.stderr
        assert '"mahavishnu-20260206-123456"' in listed.stdout
        async with SessionLifecycleManager(url) as reopened:  # nothing to migrate: no lock
            assert await reopened.active_count() == 1


async def test_a_failing_job_rolls_back_alone_and_the_batch_commits_once(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "batch.db"))
    commits: list[str] = []
    store._writer_connection.set_trace_callback(
        lambda sql: commits.append(sql) if sql == "COMMIT" else None
    )
    gate = threading.Event()
    # A lone write from another thread's event loop holds the writer connection.
    blocker = threading.Thread(target=asyncio.run, args=(store.write(lambda tx: gate.wait(10)),))
    blocker.start()
    await asyncio.sleep(0.1)
    before = len(commits)

    def insert(number: int) -> Any:
        sql = "INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, $2, 0)"
        return lambda tx: tx.run(sql, (100 + number, f"job {number}"))

    duplicate = "INSERT INTO schema_migrations (version, name, applied_us) VALUES (1, 'x', 0)"
    jobs = [store.write(insert(number)) for number in range(64)]
    jobs.insert(32, store.write(lambda tx: tx.run(duplicate)))
    writes = asyncio.gather(*jobs, return_exceptions=True)
    await asyncio.sleep(0.1)  # all 65 queued behind the blocker
    gate.set()
    await asyncio.to_thread(blocker.join)
    outcomes = await writes
    assert len(commits) - before == 2  # the blocker's commit, then all 65 in one
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert len(failures) == 1 and "UNIQUE" in str(failures[0])
    rows = await store.read(lambda tx: tx.all("SELECT version FROM schema_migrations"))
    assert {row["version"] for row in rows} >= {100 + number for number in range(64)}
    assert store.failing is None  # a bad job is not a failing store
    await store.close()


async def test_concurrent_writes_share_commits_and_no_write_runs_on_the_event_loop(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "burst.db"))
    commits: list[str] = []
    store._writer_connection.set_trace_callback(
        lambda sql: commits.append(sql) if sql == "COMMIT" else None
    )
    sql = "INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, 'burst', 0)"
    threads: list[int] = []

    def insert(number: int) -> Any:
        return lambda tx: (threads.append(threading.get_ident()), tx.run(sql, (100 + number,)))

    await asyncio.gather(*(store.write(insert(number)) for number in range(64)))
    assert len(commits) <= 2  # one batch, or a first job and then the rest
    for number in range(64, 74):  # one at a time: one commit each
        await store.write(insert(number))
    assert len(commits) <= 12
    assert threading.get_ident() not in threads  # never the event loop's thread
    rows = await store.read(lambda tx: tx.all("SELECT version FROM schema_migrations"))
    assert {row["version"] for row in rows} >= set(range(100, 174))
    await store.close()


async def test_a_write_does_not_hold_up_the_event_loop_behind_another_process(
    tmp_path: Path,
) -> None:
    database = tmp_path / "held.db"
    store = SQLiteStore(str(database))
    sql = "INSERT INTO schema_migrations (version, name, applied_us) VALUES (100, 'late', 0)"
    release = hold_write_lock(database)
    write = asyncio.ensure_future(store.write(lambda tx: tx.run(sql)))
    for _ in range(20):  # the write has started and found the lock taken
        await asyncio.sleep(0)
    assert not write.done()
    # This line runs on the event loop while the write waits: had the write held the
    # loop, it would have given up (locked) before the loop could release the lock.
    await asyncio.to_thread(release)
    assert await write == 1  # it went through once the lock was free
    await store.close()


class WriterKiller(BaseException):
    """Not an Exception: nothing in the writer's job handling catches it."""


async def test_a_dead_writer_fails_writes_at_once_and_health_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    manager = SessionLifecycleManager(url)
    service = SessionService(manager)
    assert (await service.start(start_payload())).status == "tracked"

    def die(tx: Any) -> None:
        raise WriterKiller("boom")

    with pytest.raises(StoreUnavailable, match="writer stopped"):
        await asyncio.wait_for(manager.store.write(die), 5)
    later = await asyncio.wait_for(service.start(start_payload()), 5)
    assert (later.status, later.error_code) == ("error", "store_unavailable")
    assert later.error == "store unavailable, retry later"
    health = await service.health()
    assert health["status"] == "degraded" and "writes fail" in health["reason"]
    assert health["active_sessions"] == 1  # what was stored is still there
    await asyncio.wait_for(manager.close(), 5)


async def test_a_full_disk_degrades_health_until_a_write_succeeds(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'full.db'}"
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        kept = await service.start(start_payload())
        filler = fill(small_disk)
        big = {"blob": "x" * 60_000}
        results = [
            await service.start(start_payload(metadata=big, pid=2000 + number))
            for number in range(20)
        ]
        failed = [result for result in results if result.status == "error"]
        assert failed and all(result.error_code == "store_unavailable" for result in failed)
        assert all("disk" not in str(result.error) for result in failed)  # no driver text
        health = await service.health()
        assert health["status"] == "degraded" and health["reason"]
        assert await manager.reap() == []  # a write with nothing to do: it proves nothing
        assert (await service.health())["status"] == "degraded"
        filler.unlink()
        assert (await service.start(start_payload(pid=3000))).status == "tracked"
        assert (await service.health())["status"] == "ok"
        record = await service.get_session(str(kept.session_id))
        assert record["status"] == "active"  # nothing stored before was lost


async def test_store_failures_reach_clients_without_sql_or_driver_text() -> None:
    with postgres_schema() as url:
        async with SessionLifecycleManager(url) as manager:
            service = SessionService(manager)
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("DROP TABLE events")
            result = await call_tool(service, "track_session_start", start_payload())
            assert result == {
                "session_id": None,
                "status": "error",
                "error": "store unavailable, retry later",
                "error_code": "store_unavailable",
            }
            assert (await service.health())["status"] == "degraded"
