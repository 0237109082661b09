"""SQLite connections, transactions and the lock wait, synchronous and light (no asyncio):
the embedded store's writer thread and readers use them, and so does `write_once`, one
durable write from a process that has no store open (the Claude Code hook).
"""

from __future__ import annotations

import os
import sqlite3
import time

from session_buddy.core.store.migrations import LATEST_VERSION, apply_pending, schema_version
from session_buddy.timestamps import now_micros

TYPE_CHECKING = False  # see session_buddy.lazy: the hook loads this module
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from session_buddy.core.store.base import Row, T

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 10_000
BUSY_POLL_SECONDS = 0.001
_NUMBERS = tuple(str(number) for number in range(1, 1000))


def _numbered(params: Sequence[Any]) -> dict[str, Any]:
    """Values for SQLite's `$1`, `$2`, ... parameters, which it binds by name."""
    return dict(zip(_NUMBERS, params, strict=False))


class SQLiteTx:
    dialect = "sqlite"
    lock_rows = lock_free_rows = ""
    observed: list[Any] | None = None

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self._connection.execute(sql, _numbered(params)).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._connection.execute(sql, _numbered(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._connection.execute(sql, _numbered(params)).rowcount


def connect(path: str, synchronous: str, *, writer: bool) -> sqlite3.Connection:
    """A connection; only a writer's may switch the file to WAL (which takes a lock)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if writer:
        if connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            # A new file (set before WAL and any table): pruning can give space back.
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
    else:
        connection.execute("PRAGMA query_only = ON")
    return connection


def begin_waiting(
    connection: sqlite3.Connection, wait_seconds: float = BUSY_TIMEOUT_MS / 1000
) -> None:
    """BEGIN IMMEDIATE, waiting up to `wait_seconds` for another process's write lock by
    trying again every millisecond. (SQLite's own busy handler backs off to 100 ms
    between tries, so a writer behind a process that takes the lock again and again,
    such as `prune`, would lose nearly every time it comes free.)"""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(BUSY_POLL_SECONDS)


def migrate(connection: sqlite3.Connection, wait_seconds: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Apply pending migrations; the write lock is taken only when there are any."""
    if schema_version(SQLiteTx(connection)) == LATEST_VERSION:
        return
    begin_waiting(connection, wait_seconds)
    try:
        apply_pending(SQLiteTx(connection), now_micros())
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


# write_once(keep=True)'s connections by path, with the file's inode when opened: a file
# deleted or replaced since must not take writes through a connection to the old one.
_KEPT: dict[str, tuple[sqlite3.Connection, int]] = {}


def write_once(
    path: str,
    work: Callable[[SQLiteTx], T],
    *,
    within: float,
    synchronous: str = "FULL",
    keep: bool = False,
) -> T:
    """Run `work` in one durable write transaction on the SQLite file at `path` (made and
    migrated if need be), waiting at most `within` seconds for the lock; sqlite3.Error
    when it cannot. With `keep`, the connection stays open for the next call (a process
    that writes again and again: the hook relay); one that fails is closed."""
    deadline = time.monotonic() + within
    connection = _kept(path) if keep else None
    if connection is None:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        connection = connect(path, synchronous, writer=True)
        connection.execute("PRAGMA busy_timeout = 0")  # begin_waiting waits, to a deadline
    kept = False
    try:
        migrate(connection, max(0.0, deadline - time.monotonic()))
        begin_waiting(connection, max(0.0, deadline - time.monotonic()))
        try:
            done = work(SQLiteTx(connection))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        kept = keep
        return done
    finally:
        if kept:
            _KEPT[path] = (connection, os.stat(path).st_ino)
        else:
            connection.close()


def _kept(path: str) -> sqlite3.Connection | None:
    """The kept connection to `path`, if the file is still the one it opened."""
    connection, inode = _KEPT.pop(path, (None, 0))
    if connection is None:
        return None
    try:
        same = os.stat(path).st_ino == inode
    except OSError:
        same = False
    if not same:
        connection.close()
        return None
    return connection
