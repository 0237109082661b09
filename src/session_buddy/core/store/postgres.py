"""PostgreSQL store for several stateless servers sharing one database.

Blocking psycopg connections run on a small thread pool, one transaction per call.
Correctness across processes rests on the database: unique constraints, conditional
updates and row locks taken by those updates; transient conflicts (deadlock,
serialization failure, a dropped connection) are retried.
"""

from __future__ import annotations

import asyncio
import queue
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from session_buddy.core.store.base import Row, StoreClosedError, T
from session_buddy.core.store.migrations import apply_pending
from session_buddy.core.timestamps import now_micros

POOL_SIZE = 8
ATTEMPTS = 5
_TRANSIENT = (errors.DeadlockDetected, errors.SerializationFailure)


@lru_cache(maxsize=256)
def _to_pyformat(sql: str) -> str:
    """`?` placeholders (the store's common dialect) as psycopg's `%s`."""
    return sql.replace("?", "%s")


class PostgresTx:
    dialect = "postgresql"

    def __init__(self, cursor: psycopg.Cursor[dict[str, Any]]) -> None:
        self._cursor = cursor

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(_to_pyformat(sql), params)
        return self._cursor.fetchone() if self._cursor.description else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(_to_pyformat(sql), params)
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(_to_pyformat(sql), params)
        return self._cursor.rowcount


def conninfo_from_url(url: str) -> str:
    """A libpq URI from a SQLAlchemy-style URL (`postgresql+psycopg://` included)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


class PostgresStore:
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._conninfo = conninfo_from_url(url)
        self._idle: queue.SimpleQueue[psycopg.Connection[dict[str, Any]]] = queue.SimpleQueue()
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="session-buddy-pg")
        self._closed = False
        self._migrate()

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)

    def _migrate(self) -> None:
        connection = self._connect()
        try:
            with connection.transaction(), connection.cursor() as cursor:
                # One migrator at a time per schema, whatever the number of servers.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
                apply_pending(PostgresTx(cursor), now_micros())
        finally:
            connection.close()

    def run_now(self, work: Callable[[PostgresTx], T]) -> T:
        """Run `work` in one transaction in the calling thread, retrying transient errors."""
        for attempt in range(1, ATTEMPTS + 1):
            connection = self._take()
            try:
                with connection.transaction(), connection.cursor() as cursor:
                    result = work(PostgresTx(cursor))
            except (*_TRANSIENT, psycopg.OperationalError):
                if attempt == ATTEMPTS:
                    raise
                continue
            finally:
                self._give_back(connection)
            return result
        raise AssertionError("unreachable")

    def _take(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._connect()

    def _give_back(self, connection: psycopg.Connection[dict[str, Any]]) -> None:
        if connection.closed or connection.broken or self._closed:
            connection.close()
        else:
            self._idle.put(connection)

    async def _submit(self, work: Callable[[PostgresTx], T]) -> T:
        if self._closed:
            raise StoreClosedError("the session store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run_now, work)

    async def write(self, work: Callable[[PostgresTx], T]) -> T:
        return await self._submit(work)

    async def read(self, work: Callable[[PostgresTx], T]) -> T:
        return await self._submit(work)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
