"""The spool: events that could not be delivered yet, in a small embedded queue.

One SQLite file in the state directory (WAL; an enqueue is one fsynced transaction), one
row per record. Every record carries its destination (the server or database URL it was
meant for, and whose token sent it) and is delivered only there, oldest first. Per
destination counts are kept by triggers, so an enqueue costs the same with 0 or 100,000
records waiting. A lease keeps two flushes off one destination: an exclusive lock on a
file of its own, held by one flush (another thread of the same process is another
flush), gone with the process, and taken without writing to the spool (so a full disk
does not stop a flush). Delivered records are deleted page by page, so a flusher killed
half-way leaves at most one page to deliver again, which event ids make harmless. A
record that cannot be read is quarantined, never blocking the ones behind it; set-aside
records (refused, quarantined) are kept up to the same bound as pending ones. A spool
file that is damaged is set aside whole (`spool.db.damaged-<time>`), what can still be
read of it is taken into a new one, and that is said once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from session_buddy.config import Settings

PENDING, REJECTED, QUARANTINED = "pending", "rejected", "quarantined"
# Records of the old line-per-event spool file: no destination was written down.
LEGACY_DESTINATION = "legacy:spool.jsonl"
LEGACY_SUFFIX = "jsonl-before-queue"
SQLITE_HEADER = b"SQLite format 3\x00"
MAX_BACKOFF_SECONDS = 300.0
KNOWN_IDS_KEPT = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    identity TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'rejected', 'quarantined')),
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    created_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_queue ON records (destination, state, id);
CREATE TABLE IF NOT EXISTS queues (
    destination TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (destination, state)
);
CREATE TRIGGER IF NOT EXISTS records_added AFTER INSERT ON records BEGIN
    INSERT INTO queues VALUES (NEW.destination, NEW.state, 1)
    ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS records_removed AFTER DELETE ON records BEGIN
    UPDATE queues SET n = n - 1 WHERE destination = OLD.destination AND state = OLD.state;
END;
CREATE TRIGGER IF NOT EXISTS records_moved AFTER UPDATE OF state, destination ON records BEGIN
    UPDATE queues SET n = n - 1 WHERE destination = OLD.destination AND state = OLD.state;
    INSERT INTO queues VALUES (NEW.destination, NEW.state, 1)
    ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS session_ids (event_id TEXT PRIMARY KEY, session_id TEXT NOT NULL);
"""
# What SQLite says of a file that is not (or no longer) a sound database; and (primary
# codes) of a disk with no room left.
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_NO_ROOM = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


T = TypeVar("T")


class SpoolError(Exception):
    """The spool cannot take or give records (unwritable, corrupt, full)."""


class SpoolFull(SpoolError):
    """The destination already has the most pending records allowed."""


class Destination(NamedTuple):
    """Where records go: a server or database URL, and whose token sends them (never
    the token itself)."""

    url: str
    identity: str = ""


class Spooled(NamedTuple):
    id: int
    destination: str
    identity: str
    state: str
    body: str
    attempts: int
    next_attempt_us: int
    reason: str | None
    created_us: int

    def record(self) -> dict[str, Any] | None:
        """The record, or None when it cannot be read as one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if is_record(value) else None


def is_record(value: Any) -> bool:
    """Is this a record the courier knows how to deliver?"""
    if not isinstance(value, dict):
        return False
    kind = value.get("kind")
    if kind == "hook":  # a stamped Claude Code hook payload
        payload = value.get("payload")
        return isinstance(payload, dict) and isinstance(payload.get("hook_event_name"), str)
    if not isinstance(value.get("event"), dict):
        return False
    if kind == "start":
        return isinstance(value["event"].get("event_id"), str)
    if kind == "end":
        return any(isinstance(value.get(k), str) for k in ("session_id", "start_event_id"))
    return kind == "end_external" and isinstance(value.get("external_id"), str)


def _is_old_spool_file(path: Path) -> bool:
    """A non-empty file that is not a SQLite database: a spool of the old format."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError:
        return False
    return bool(head) and head != SQLITE_HEADER


def _now_us() -> int:
    return time.time_ns() // 1000


def _backoff_us(attempts: int) -> int:
    """Full jitter up to an exponentially growing cap (1 s, 2 s, ... 5 min)."""
    import random  # here: only a failed delivery needs it, not a shell's launch

    cap = min(MAX_BACKOFF_SECONDS, 2.0 ** max(attempts - 1, 0))
    return int(random.uniform(cap / 2, cap) * 1_000_000)


class Spool:
    def __init__(self, path: Path | None = None, *, max_pending: int | None = None) -> None:
        if path is None or max_pending is None:
            settings = Settings.from_environment()
            path = path or settings.spool_path
            max_pending = max_pending or settings.spool_max
        self.path = path
        self.max_pending = max_pending
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.RLock()  # one connection, shared by an emitter's threads

    # -- opening -----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                try:
                    self._connection = self._open()
                except sqlite3.DatabaseError as exc:
                    if exc.sqlite_errorcode in _DAMAGED:
                        self._set_aside_damaged(exc)
                        self._connection = self._open()
                    elif exc.sqlite_errorcode & 0xFF in _NO_ROOM and self.path.is_file():
                        self._connection = self._open_to_read(exc)
                    else:
                        raise
            except (OSError, sqlite3.Error) as exc:
                raise SpoolError(f"cannot use the spool {self.path}: {exc}") from exc
        return self._connection

    def _open_to_read(self, exc: sqlite3.Error) -> sqlite3.Connection:
        """The spool as it is, read-only, when it cannot even be opened for writing (a
        full disk): its records can still be delivered; they are removed later."""
        print(
            f"session-buddy: the spool {self.path} cannot be written ({exc}); "
            "its records are read only",
            file=sys.stderr,
        )
        return sqlite3.connect(
            f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )

    def _set_aside_damaged(self, exc: sqlite3.Error) -> None:
        """Move a damaged spool file aside, start a new one with what can still be read
        of it, and say so (once: the new file is sound)."""
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        salvaged = _readable_records(self.path)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        connection = self._open()
        with connection:
            connection.executemany(
                "INSERT INTO records (destination, identity, state, body, attempts, "
                "next_attempt_us, reason, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                salvaged,
            )
        connection.close()
        print(
            f"session-buddy: the spool {self.path} was damaged ({exc}); it is kept as {aside} "
            f"and a new one holds the {len(salvaged)} record(s) that could still be read",
            file=sys.stderr,
        )

    def _damage_guard(self, exc: sqlite3.Error) -> bool:
        """Set the spool aside if `exc` says it is damaged; True when it was."""
        if not isinstance(exc, sqlite3.DatabaseError) or exc.sqlite_errorcode not in _DAMAGED:
            return False
        try:
            self._set_aside_damaged(exc)
        except (OSError, sqlite3.Error):
            return False
        return True

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if _is_old_spool_file(self.path):  # $SESSION_BUDDY_SPOOL still names a spool.jsonl
            self.path.rename(self.path.with_name(f"{self.path.name}.{LEGACY_SUFFIX}"))
        connection = sqlite3.connect(
            self.path, isolation_level=None, timeout=0.8, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.executescript(_SCHEMA)
            self._import_legacy(connection)
            self.path.with_name(f"{self.path.name}.leases").mkdir(exist_ok=True)
        except BaseException:
            connection.close()
            raise
        return connection

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            for tries_left in (1, 0):
                try:
                    return self._db().execute(sql, params).fetchall()
                except sqlite3.Error as exc:
                    if not (tries_left and self._damage_guard(exc)):
                        raise SpoolError(f"cannot read the spool {self.path}: {exc}") from exc
            raise AssertionError("unreachable")

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one write transaction; once more on a new spool if this one
        turns out damaged. SpoolError when it cannot be done."""
        with self._lock:
            for tries_left in (1, 0):
                try:
                    return self._in_transaction(work)
                except sqlite3.Error as exc:
                    if not (tries_left and self._damage_guard(exc)):
                        raise SpoolError(f"cannot use the spool {self.path}: {exc}") from exc
            raise AssertionError("unreachable")

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._db()
        connection.execute("BEGIN IMMEDIATE")
        try:
            done = work(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return done

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _import_legacy(self, connection: sqlite3.Connection) -> None:
        """Take in, once, the records of the old spool.jsonl beside this file (and what a
        replay of it left behind, and an old file this path used to name); lines that are
        not records are quarantined whole."""
        old = sorted(self.path.parent.glob("spool.jsonl.replaying-*"))
        old += [self.path.with_name("spool.jsonl")]
        old += [self.path.with_name(f"{self.path.name}.{LEGACY_SUFFIX}")]
        old = [
            path
            for path in old
            if path.is_file() and path != self.path and not path.name.endswith(".imported")
        ]
        if not old:
            return
        now = _now_us()
        connection.execute("BEGIN IMMEDIATE")
        for path in old:
            for line in path.read_bytes().splitlines():
                if not line.strip():
                    continue
                text = line.decode("utf-8", "replace")
                try:
                    readable = is_record(json.loads(text))
                except ValueError:
                    readable = False
                connection.execute(
                    "INSERT INTO records (destination, identity, state, body, reason, "
                    "created_us) VALUES (?, '', ?, ?, ?, ?)",
                    (
                        LEGACY_DESTINATION,
                        PENDING if readable else QUARANTINED,
                        text,
                        None if readable else f"not a record (from {path.name})",
                        now,
                    ),
                )
        connection.execute("COMMIT")
        for path in old:
            path.rename(path.with_name(path.name + ".imported"))

    # -- queueing ----------------------------------------------------------------------

    def enqueue(
        self, destination: Destination, record: dict[str, Any], reason: str | None = None
    ) -> int:
        """Append a record for `destination`; its id. SpoolError when it cannot."""
        body = json.dumps(record, separators=(",", ":"))

        def work(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT n FROM queues WHERE destination = ? AND state = ?",
                (destination.url, PENDING),
            ).fetchone()
            if row is not None and row[0] >= self.max_pending:
                raise SpoolFull(
                    f"the spool already holds {row[0]} records for {destination.url} "
                    f"(at most {self.max_pending}); this event is not kept"
                )
            cursor = db.execute(
                "INSERT INTO records (destination, identity, state, body, reason, created_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (destination.url, destination.identity, PENDING, body, reason, _now_us()),
            )
            return int(cursor.lastrowid or 0)

        return self._write(work)

    def count(self, url: str, state: str = PENDING) -> int:
        rows = self._rows("SELECT n FROM queues WHERE destination = ? AND state = ?", (url, state))
        return int(rows[0][0]) if rows else 0

    def head(self, url: str, limit: int, after: int = 0) -> list[Spooled]:
        """The oldest pending records of a destination (after record `after`)."""
        rows = self._rows(
            "SELECT * FROM records WHERE destination = ? AND state = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (url, PENDING, after, limit),
        )
        return [Spooled(*row) for row in rows]

    def due(self, url: str) -> bool:
        """Is the oldest pending record of a destination due for another try?"""
        rows = self._rows(
            "SELECT next_attempt_us FROM records WHERE destination = ? AND state = ? "
            "ORDER BY id LIMIT 1",
            (url, PENDING),
        )
        return bool(rows) and rows[0][0] <= _now_us()

    def delivered(self, ids: list[int], session_ids: dict[str, str] | None = None) -> None:
        """Remove delivered records, and note the session ids that late starts got (by
        event id, for `spooled:<event id>` placeholders), in one transaction."""
        if not ids and not session_ids:
            return

        def work(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])
            if session_ids:
                db.executemany(
                    "INSERT OR REPLACE INTO session_ids (event_id, session_id) VALUES (?, ?)",
                    session_ids.items(),
                )
                db.execute(
                    "DELETE FROM session_ids "
                    "WHERE rowid <= (SELECT MAX(rowid) FROM session_ids) - ?",
                    (KNOWN_IDS_KEPT,),
                )

        self._write(work)

    def set_aside(self, record_id: int, state: str, reason: str) -> None:
        """Move a record out of the queue: rejected for good, or quarantined. Of those set
        aside for a destination in one state, the newest `max_pending` are kept."""

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "UPDATE records SET state = ?, reason = ? WHERE id = ? RETURNING destination",
                (state, reason, record_id),
            ).fetchone()
            if row is not None:
                db.execute(
                    "DELETE FROM records WHERE id IN (SELECT id FROM records "
                    "WHERE destination = ? AND state = ? ORDER BY id DESC LIMIT -1 OFFSET ?)",
                    (row[0], state, self.max_pending),
                )

        self._write(work)

    def postpone(self, record_id: int, reason: str) -> None:
        """A try failed for a reason that may pass: try again after a backoff."""

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "UPDATE records SET attempts = attempts + 1, reason = ? WHERE id = ? "
                "RETURNING attempts",
                (reason, record_id),
            ).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE records SET next_attempt_us = ? WHERE id = ?",
                    (_now_us() + _backoff_us(row[0]), record_id),
                )

        self._write(work)

    def rehome(self, source: str, destination: Destination) -> int:
        """Send a queue's pending records to another destination (a person's decision,
        for records whose destination was never written down)."""
        if not self.count(source):
            return 0  # nothing to move: no write (the disk may be full)

        def work(db: sqlite3.Connection) -> int:
            return int(
                db.execute(
                    "UPDATE records SET destination = ?, identity = ? "
                    "WHERE destination = ? AND state = ?",
                    (destination.url, destination.identity, source, PENDING),
                ).rowcount
            )

        return self._write(work)

    def drop(self, record_id: int) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            return bool(db.execute("DELETE FROM records WHERE id = ?", (record_id,)).rowcount > 0)

        return self._write(work)

    def destinations(self) -> list[str]:
        """The destinations that have records waiting."""
        rows = self._rows("SELECT destination FROM queues WHERE state = ? AND n > 0", (PENDING,))
        return sorted(str(row[0]) for row in rows)

    def listing(self, states: tuple[str, ...]) -> list[Spooled]:
        marks = ", ".join("?" for _ in states)
        rows = self._rows(f"SELECT * FROM records WHERE state IN ({marks}) ORDER BY id", states)
        return [Spooled(*row) for row in rows]

    # -- session ids of starts delivered late ------------------------------------------

    def known_session_id(self, event_id: str) -> str | None:
        """The session id a start delivered from the spool got, by its event id."""
        try:
            rows = self._rows("SELECT session_id FROM session_ids WHERE event_id = ?", (event_id,))
        except SpoolError:
            return None
        return str(rows[0][0]) if rows else None

    # -- one flusher per destination ---------------------------------------------------

    @contextlib.contextmanager
    def lease(self, url: str) -> Iterator[bool]:
        """Hold the destination's lease while delivering (False: another flush holds it,
        in this process or another). An exclusive lock on a file of the destination's
        own, which the system drops with the process that held it."""
        import fcntl
        import hashlib

        folder = self.path.with_name(f"{self.path.name}.leases")
        try:
            folder.mkdir(exist_ok=True)
            name = hashlib.sha256(url.encode()).hexdigest()[:32]
            handle = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot take the lease of {url} in {folder}: {exc}") from exc
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(handle)  # releases the lock


def _readable_records(path: Path) -> list[tuple[Any, ...]]:
    """The records that can still be read from a damaged spool file, read from both ends
    (a damaged page in the middle hides the rest from a read in one direction)."""
    found: dict[int, tuple[Any, ...]] = {}
    columns = (
        "id, destination, identity, state, body, attempts, next_attempt_us, reason, created_us"
    )
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        for order in ("ASC", "DESC"):
            with contextlib.suppress(sqlite3.Error):
                for row in connection.execute(f"SELECT {columns} FROM records ORDER BY id {order}"):
                    found[row[0]] = row[1:]
    finally:
        connection.close()
    return [found[key] for key in sorted(found)]
