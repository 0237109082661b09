"""Embedded SQLite store: one writer connection with group commit, pooled readers.

Every write is a job on a queue. The writer thread takes all queued jobs, runs them in
one transaction and commits once (synchronous=FULL by default), then answers every
caller. Concurrent callers therefore share one fsync, while a caller only hears back
after its work is on disk. No write, nor its fsync, ever runs on the caller's event
loop thread: a disk that stalls holds up the writes, never health checks and reads,
which run on reader connections (WAL: readers never wait for the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from session_buddy.core.errors import (
    InvalidArgument,
    NoDatabase,
    RefusedValue,
    StoreClosedError,
    StoreOpenError,
    StoreUnavailable,
)
from session_buddy.core.store.base import T
from session_buddy.core.store.migrations import LATEST_VERSION, schema_version
from session_buddy.core.store.sqlite_connection import (
    SYNCHRONOUS_MODES,
    SQLiteTx,
    begin_waiting,
    connect,
    migrate,
)

MAX_BATCH = 1024


Work = Callable[[SQLiteTx], Any]
Done = tuple[Any, BaseException | None]  # a work's result, or what it failed with


@dataclass
class _Job:
    work: Work
    future: asyncio.Future[Any]


Outcome = tuple[_Job, Any, BaseException | None]


def _settle(outcomes: list[Outcome]) -> None:
    for job, result, error in outcomes:
        if job.future.done():  # the caller gave up (cancelled); the work stands regardless
            continue
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)


def _answer(outcomes: list[Outcome]) -> None:
    """Wake each waiting event loop once per batch, not once per job (each wake-up is a
    syscall and a GIL hand-off)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].future.get_loop(), []).append(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is gone: nobody waits
            loop.call_soon_threadsafe(_settle, settled)


class SQLiteStore:
    """`read_only`: for commands that only read. Opening then creates nothing, takes no
    lock and migrates nothing; a missing file is NoDatabase."""

    def __init__(self, path: str, *, synchronous: str = "FULL", read_only: bool = False) -> None:
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
        self.path = str(Path(path).expanduser())
        self.url = f"sqlite:///{self.path}"
        self.read_only = read_only
        self.failing: str | None = None  # why writes fail now; None once one succeeds
        self._synchronous = synchronous
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._accepting = threading.Lock()  # held to enqueue, and to declare the writer dead
        self._closed = False
        self._writer: threading.Thread | None = None
        self._writer_stopped: str | None = None  # why the writer thread died
        try:
            if read_only:
                if not Path(self.path).is_file():
                    raise NoDatabase(self.path)
                self._check_schema()
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._writer_connection = connect(self.path, synchronous, writer=True)
                migrate(self._writer_connection)
                self._writer_connection.execute("PRAGMA busy_timeout = 0")  # _begin_waiting
        except (sqlite3.Error, OSError) as exc:
            raise StoreOpenError(f"cannot open the session database {self.path}: {exc}") from exc
        if not read_only:
            self._writer = threading.Thread(
                target=self._write_loop, name="session-buddy-sqlite-writer", daemon=True
            )
            self._writer.start()

    def _check_schema(self) -> None:
        version = self.read_now(schema_version)
        if version < LATEST_VERSION:
            raise StoreOpenError(
                f"the session database {self.path} has schema version {version}, this "
                f"session-buddy reads {LATEST_VERSION}: run `session-buddy db upgrade`"
            )

    async def write(self, work: Callable[[SQLiteTx], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._accepting:
            self._refuse_if_stopped()
            self._jobs.put(_Job(work, future))
        return await future

    def _refuse_if_stopped(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")
        if self._writer is None:
            raise StoreUnavailable(f"{self.path} was opened for reading only")
        if self._writer_stopped is not None:
            raise StoreUnavailable(self._writer_stopped)

    async def read(self, work: Callable[[SQLiteTx], T]) -> T:
        if self._closed:
            raise StoreClosedError("the session store is closed")
        return await asyncio.to_thread(self.read_now, work)

    def read_now(self, work: Callable[[SQLiteTx], T]) -> T:
        """Run a read in the calling thread (for synchronous callers)."""
        try:
            connection = self._readers.get_nowait()
        except queue.Empty:
            try:
                connection = connect(self.path, self._synchronous, writer=False)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
        try:
            connection.execute("BEGIN")
            try:
                return work(SQLiteTx(connection))
            finally:
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        finally:
            self._readers.put(connection)

    def _write_loop(self) -> None:
        batch: list[_Job] = []
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._next_batch(self._jobs.get())
                works = [job.work for job in batch]
                done = self._commit_batch(self._writer_connection, works) if works else []
                _answer([(job, *outcome) for job, outcome in zip(batch, done, strict=True)])
                batch = []
        except BaseException as exc:  # a bug, or a job that raised past Exception
            died = self._stop_writing(exc)
            _answer([(job, None, died) for job in batch])
        finally:
            self._refuse_leftovers()
            self._writer_connection.close()

    def _stop_writing(self, exc: BaseException) -> StoreUnavailable:
        """Refuse every later write: the writer connection's state is unknown."""
        with self._accepting:  # no job is queued after this
            self._writer_stopped = self.failing = f"the store's writer stopped: {exc!r}"
            self._jobs.put(None)  # the writer thread, if it still runs, closes the connection
        return StoreUnavailable(self._writer_stopped)

    def _next_batch(self, item: _Job | None) -> tuple[list[_Job], bool]:
        """`item` and the jobs queued after it, up to MAX_BATCH; and whether the stop
        (a None) came."""
        batch: list[_Job] = []
        while True:
            if item is None:
                return batch, True
            batch.append(item)
            if len(batch) >= MAX_BATCH:
                return batch, False
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return batch, False

    def _refuse_leftovers(self) -> None:
        """Answer jobs that raced with close() instead of leaving their callers waiting."""
        refusal = StoreClosedError() if self._closed else StoreUnavailable(str(self.failing))
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _answer([(item, None, refusal)])

    def _commit_batch(self, connection: sqlite3.Connection, batch: list[Work]) -> list[Done]:
        """Run the batch in one transaction, each work in a savepoint of its own (a work
        that fails rolls back only itself), and commit once. A work alone needs no
        savepoint: if it fails, the transaction is rolled back instead."""
        outcomes: list[Done] = []
        alone = len(batch) == 1
        tx = SQLiteTx(connection)
        changes = connection.total_changes
        try:
            begin_waiting(connection)
            for work in batch:
                if not alone:
                    connection.execute("SAVEPOINT job")
                try:
                    outcomes.append((work(tx), None))
                except Exception as exc:
                    if not alone:
                        connection.execute("ROLLBACK TO job")
                    elif connection.in_transaction:
                        connection.execute("ROLLBACK")
                    outcomes.append((None, self._store_error(exc)))
                if not alone:
                    connection.execute("RELEASE job")
            if connection.in_transaction:
                connection.execute("COMMIT")
        except sqlite3.Error as exc:  # the transaction itself failed: every work with it
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            failed = self._store_error(exc)
            return [(None, failed)] * len(batch)
        # Only a commit that wrote something shows that writes work again: one that
        # changed nothing (a reaper run with nobody to reap) never touched the disk.
        if any(error is None for _, error in outcomes) and connection.total_changes > changes:
            self.failing = None
        return outcomes

    def _store_error(self, exc: Exception) -> Exception:
        """A driver error as StoreUnavailable (its text for the log, `failing` for
        health), or RefusedValue for a value the client sent; anything else as it is."""
        if isinstance(exc, sqlite3.DataError):
            return RefusedValue()
        if not isinstance(exc, sqlite3.Error) or isinstance(exc, sqlite3.IntegrityError):
            return exc
        self.failing = f"writes to {self.path} fail: {exc}"
        return StoreUnavailable(self.failing)

    async def close(self) -> None:
        if self._closed:
            return
        with self._accepting:
            self._closed = True
            self._jobs.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
