"""Embedded SQLite store: one writer thread with group commit, pooled readers.

Every write is a job on a queue. The writer thread takes all queued jobs, runs them in
one transaction and commits once (synchronous=FULL by default), then answers every
caller. Concurrent callers therefore share one fsync, while a caller only hears back
after its work is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from session_buddy.core.errors import InvalidArgument, StoreClosedError
from session_buddy.core.store.base import Row, T
from session_buddy.core.store.migrations import apply_pending
from session_buddy.timestamps import now_micros

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
MAX_BATCH = 1024


_NUMBERS = tuple(str(number) for number in range(1, 1000))


def _numbered(params: Sequence[Any]) -> dict[str, Any]:
    """Values for SQLite's `$1`, `$2`, ... parameters, which it binds by name."""
    return dict(zip(_NUMBERS, params, strict=False))


class SQLiteTx:
    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self._connection.execute(sql, _numbered(params)).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._connection.execute(sql, _numbered(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._connection.execute(sql, _numbered(params)).rowcount


@dataclass
class _Job:
    work: Callable[[SQLiteTx], Any]
    future: asyncio.Future[Any]


def _settle(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in outcomes:
        if job.future.done():  # the caller gave up (cancelled); the work stands regardless
            continue
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)


def _answer(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Wake each waiting event loop once per batch, not once per job (each wake-up is a
    syscall and a GIL hand-off)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].future.get_loop(), []).append(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is gone: nobody waits
            loop.call_soon_threadsafe(_settle, settled)


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA busy_timeout = 10000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    return connection


class SQLiteStore:
    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise InvalidArgument(
                "sqlite_synchronous",
                f"Invalid SQLite synchronous mode {synchronous!r}: "
                f"use one of {', '.join(SYNCHRONOUS_MODES)}",
            )
        if path == ":memory:" or path.startswith("file:"):
            raise InvalidArgument(
                "database_url", "SQLite store needs a file path, not an in-memory database"
            )
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = str(Path(path).expanduser())
        self.url = f"sqlite:///{self.path}"
        self._synchronous = synchronous
        self._writer_connection = _connect(self.path, synchronous)
        self._migrate()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_loop, name="session-buddy-sqlite-writer", daemon=True
        )
        self._writer.start()

    def _migrate(self) -> None:
        connection = self._writer_connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            apply_pending(SQLiteTx(connection), now_micros())
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    async def write(self, work: Callable[[SQLiteTx], T]) -> T:
        if self._closed:
            raise StoreClosedError("the session store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(work, future))
        return await future

    async def read(self, work: Callable[[SQLiteTx], T]) -> T:
        if self._closed:
            raise StoreClosedError("the session store is closed")
        return await asyncio.to_thread(self.read_now, work)

    def read_now(self, work: Callable[[SQLiteTx], T]) -> T:
        """Run a read in the calling thread (for synchronous callers)."""
        try:
            connection = self._readers.get_nowait()
        except queue.Empty:
            connection = _connect(self.path, self._synchronous)
        try:
            connection.execute("BEGIN")
            try:
                return work(SQLiteTx(connection))
            finally:
                connection.execute("COMMIT")
        finally:
            self._readers.put(connection)

    def _write_loop(self) -> None:
        connection = self._writer_connection
        tx = SQLiteTx(connection)
        stopping = False
        while not stopping:
            batch: list[_Job] = []
            item = self._jobs.get()
            while True:
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit_batch(connection, tx, batch)
        self._refuse_leftovers()
        connection.close()

    def _refuse_leftovers(self) -> None:
        """Answer jobs that raced with close() instead of leaving their callers waiting."""
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _answer([(item, None, StoreClosedError("the session store is closed"))])

    def _commit_batch(
        self, connection: sqlite3.Connection, tx: SQLiteTx, batch: list[_Job]
    ) -> None:
        """Commit the whole batch at once; if any job fails, redo them one by one so a
        bad job costs only itself."""
        try:
            outcomes = self._run_in_one_transaction(connection, tx, batch)
        except Exception:
            outcomes = []
            for job in batch:
                try:
                    outcomes.extend(self._run_in_one_transaction(connection, tx, [job]))
                except Exception as exc:
                    outcomes.append((job, None, exc))
        _answer(outcomes)

    @staticmethod
    def _run_in_one_transaction(
        connection: sqlite3.Connection, tx: SQLiteTx, jobs: list[_Job]
    ) -> list[tuple[_Job, Any, BaseException | None]]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            results: list[tuple[_Job, Any, BaseException | None]] = [
                (job, job.work(tx), None) for job in jobs
            ]
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return results

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._writer.join)
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
