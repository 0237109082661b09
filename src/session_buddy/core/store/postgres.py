"""PostgreSQL store for several stateless servers sharing one database.

Connections come from a `psycopg_pool` pool; each call is one transaction on a worker
thread. Statements use PostgreSQL's own `$n` placeholders (psycopg's RawCursor), the
same text SQLite runs. Correctness across processes rests on the database: unique
constraints, conditional updates and the row locks they take. Conflicts that the
database resolves by aborting one side (deadlock, serialization failure) and dropped
connections are retried with jittered backoff: every transition is idempotent, so a
transaction whose commit was lost with its connection is safe to run again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from session_buddy.config import without_password
from session_buddy.core.errors import (
    ConcurrentChange,
    RefusedValue,
    StoreClosedError,
    StoreOpenError,
    StoreUnavailable,
)
from session_buddy.core.store.base import Row, T
from session_buddy.core.store.migrations import LATEST_VERSION, apply_pending, schema_version
from session_buddy.timestamps import now_micros

POOL_SIZE = 8
ATTEMPTS = 5
BACKOFF_SECONDS = 0.01
# Every wait is bounded: for a pooled connection, for a new connection, for the retries
# of one call, and for the call as a whole (a server that stopped answering mid-query).
POOL_WAIT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 2  # the least libpq takes
RETRY_WITHIN_SECONDS = 2.0
CALL_DEADLINE_SECONDS = 5.0
# A connection whose server vanished from the network is found dead in ~10 s, not hours.
_LIVENESS = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}
# A unique violation is a race another writer won: deciding again sees its row.
_TRANSIENT = (
    errors.DeadlockDetected,
    errors.SerializationFailure,
    errors.UniqueViolation,
    psycopg.OperationalError,
)
# Bad bytes or out-of-range values a client sent (class 22: data exception).
_CLIENT_ERRORS = (psycopg.DataError,)
COMMIT_STATUS_WAIT = 1.0  # seconds to wait for a transaction the server still commits


class PostgresTx:
    dialect = "postgresql"
    lock_rows = " FOR UPDATE"
    lock_free_rows = " FOR UPDATE SKIP LOCKED"
    observed: list[Any] | None = None

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:  # a RawCursor: `$n` placeholders
        self._cursor = cursor

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(sql, params)
        return self._cursor.fetchone() if self._cursor.description else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(sql, params)
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(sql, params)
        return self._cursor.rowcount


def conninfo_from_url(url: str) -> str:
    """A libpq URI from a SQLAlchemy-style URL (`postgresql+psycopg://` included)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def _current_xid(tx: PostgresTx) -> int:
    row = tx.one("SELECT txid_current() AS xid")
    return int(row["xid"]) if row else 0


def _backoff(attempt: int) -> float:
    """Full jitter: a random wait up to an exponentially growing cap."""
    return random.uniform(0, BACKOFF_SECONDS * 2**attempt)


class _Workers:
    """Daemon threads that run database calls, each call given up by its caller after
    CALL_DEADLINE_SECONDS. A thread stuck on a connection whose server stopped answering
    stays stuck until the socket fails (keepalives), and being a daemon it never holds
    up the process's exit (asyncio's own threads would)."""

    def __init__(self, count: int) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._count = count
        for number in range(count):
            name = f"session-buddy-postgres-{number}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up before it started
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    async def run(self, call: Callable[[], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((call, future))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), CALL_DEADLINE_SECONDS)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"the database did not answer within {CALL_DEADLINE_SECONDS:g} s"
            ) from exc

    def close(self) -> None:
        for _ in range(self._count):
            self._calls.put(None)


_Call = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class PostgresStore:
    """`read_only`: for commands that only read; opening migrates nothing."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE, read_only: bool = False) -> None:
        self.url = url
        self.failing: str | None = None  # why writes fail now; None once one succeeds
        conninfo = conninfo_from_url(url)
        connect_options: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "cursor_factory": psycopg.RawCursor,
        } | _LIVENESS
        # Migrate on a connection of its own first: an unreachable server fails here at
        # once, with the driver's reason, instead of in the pool's reconnect loop.
        try:
            with (
                psycopg.connect(conninfo, **connect_options) as connection,
                connection.transaction(),
                connection.cursor() as cursor,
            ):
                self._prepare(PostgresTx(cursor), read_only)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreOpenError(
                f"cannot open the session database {without_password(url)}: {reason}"
            ) from exc
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs=connect_options,
            timeout=POOL_WAIT_SECONDS,
            open=True,
        )
        self._workers = _Workers(2 * pool_size)  # half of them may wait for a connection
        self._closed = False

    def _prepare(self, tx: PostgresTx, read_only: bool) -> None:
        if read_only:
            version = schema_version(tx)
            if version < LATEST_VERSION:
                raise StoreOpenError(
                    f"the session database {without_password(self.url)} has schema version "
                    f"{version}, this session-buddy reads {LATEST_VERSION}: "
                    "run `session-buddy db upgrade`"
                )
            return
        # One migrator at a time per schema, whatever the number of servers.
        tx.one("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        apply_pending(tx, now_micros())

    def run_now(self, work: Callable[[PostgresTx], T], *, write: bool = False) -> T:
        """Run `work` in one transaction in the calling thread, retrying conflicts and
        lost connections. A write whose COMMIT was lost with its connection is not run
        again if it committed: its answer is the first attempt's. A driver error that
        remains is StoreUnavailable (its text for the log only), or InvalidArgument when
        a value sent by the client is what the database refused."""
        retry_until = time.monotonic() + RETRY_WITHIN_SECONDS
        for attempt in range(ATTEMPTS):
            xid: int | None = None
            committing = False
            try:
                with self._pool.connection() as connection:
                    with connection.transaction(), connection.cursor() as cursor:
                        tx = PostgresTx(cursor)
                        if write:
                            xid = _current_xid(tx)
                        result = work(tx)
                        committing = True
                    return result
            except PoolTimeout as exc:  # an OperationalError, but waiting again cannot help
                raise StoreUnavailable(
                    f"no database connection within {POOL_WAIT_SECONDS:g} s: {exc}"
                ) from exc
            except _CLIENT_ERRORS as exc:
                raise RefusedValue() from exc
            except _TRANSIENT as exc:
                if committing and xid is not None and self._committed(xid):
                    return result
                if attempt == ATTEMPTS - 1 or time.monotonic() > retry_until:
                    if isinstance(exc, errors.UniqueViolation):  # a conflict, not a failure
                        raise ConcurrentChange() from exc
                    raise StoreUnavailable(f"the database fails: {exc}") from exc
                time.sleep(_backoff(attempt))
            except psycopg.Error as exc:
                raise StoreUnavailable(f"the database fails: {exc}") from exc
        raise AssertionError("unreachable")

    def _committed(self, xid: int) -> bool:
        """Did the transaction `xid`, whose COMMIT got no answer, commit? Asked on another
        connection, waiting a little while the server still works on it."""
        deadline = time.monotonic() + COMMIT_STATUS_WAIT
        while True:
            try:
                with self._pool.connection() as connection, connection.cursor() as cursor:
                    row = PostgresTx(cursor).one("SELECT txid_status($1) AS status", (xid,))
            except (psycopg.Error, PoolTimeout):
                return False
            status = row["status"] if row else None
            if status != "in progress" or time.monotonic() > deadline:
                return status == "committed"
            time.sleep(0.01)

    async def write(self, work: Callable[[PostgresTx], T]) -> T:
        """`work` in a transaction on a pool thread; what became of it is
        what `failing` says (a value the client sent that the database refused is not a
        failure of the store)."""
        try:
            if self._closed:
                raise StoreClosedError()
            result = await self._workers.run(functools.partial(self.run_now, work, write=True))
        except StoreUnavailable as exc:
            self.failing = str(exc)
            raise
        self.failing = None
        return result

    async def read(self, work: Callable[[PostgresTx], T]) -> T:
        if self._closed:
            raise StoreClosedError()
        return await self._workers.run(functools.partial(self.run_now, work))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._workers.close()
        await asyncio.to_thread(self._pool.close)


def write_once_postgres(url: str, work: Callable[[PostgresTx], T], *, within: float) -> T:
    """Run `work` in one write transaction on a connection of its own (made and
    migrated if need be), for a process that has no store open (the Claude Code hook);
    the connection waits at most `within` seconds (at least libpq's 2)."""
    options: dict[str, Any] = (
        {
            "autocommit": True,
            "row_factory": dict_row,
            "cursor_factory": psycopg.RawCursor,
        }
        | _LIVENESS
        | {"connect_timeout": max(CONNECT_TIMEOUT_SECONDS, int(within + 0.999))}
    )
    with psycopg.connect(conninfo_from_url(url), **options) as connection:
        with connection.transaction(), connection.cursor() as cursor:
            tx = PostgresTx(cursor)
            if schema_version(tx) < LATEST_VERSION:
                tx.one("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
                apply_pending(tx, now_micros())
        with connection.transaction(), connection.cursor() as cursor:
            return work(PostgresTx(cursor))
