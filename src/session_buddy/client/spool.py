"""A local file of events that could not be delivered, replayed later in order.

Appends take an exclusive lock, write one JSON line and fsync, so concurrent shells never
interleave and a crash mid-write leaves at most one torn last line (skipped on replay).
A replay first moves the spool aside under the lock (appends never wait on the network),
delivers its records in order, and puts back whatever is left, ahead of newer records.
Replays are idempotent on the server (event ids, ended stays ended), so a replay that
dies half-way is simply done again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from session_buddy.config import Settings

KNOWN_IDS_KEPT = 2000


@dataclass
class ReplayReport:
    delivered: int = 0
    remaining: int = 0
    problems: list[str] = field(default_factory=list)


class Spool:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Settings.from_environment().spool_path
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._replay_lock_path = self.path.with_name(self.path.name + ".replay-lock")
        self._ids_path = self.path.with_name(self.path.name + ".ids.json")

    @contextlib.contextmanager
    def _locked(self, lock_path: Path, *, wait: bool = True) -> Iterator[bool]:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._locked(self._lock_path):
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def pending(self) -> int:
        """How many records wait in the spool (torn lines excluded)."""
        with self._locked(self._lock_path):
            return len(_read_records(self.path))

    def known_session_id(self, event_id: str) -> str | None:
        """The session id a replayed start got, by its event id."""
        return _read_ids(self._ids_path).get(event_id)

    def remember(self, event_id: str, session_id: str) -> None:
        with self._locked(self._lock_path):
            ids = _read_ids(self._ids_path)
            ids[event_id] = session_id
            kept = dict(list(ids.items())[-KNOWN_IDS_KEPT:])
            _write_atomically(self._ids_path, json.dumps(kept).encode())

    def replay(self, deliver: Callable[[dict[str, Any]], bool]) -> ReplayReport:
        """Hand each record, oldest first, to `deliver`, which returns True once the record
        is done with (delivered or rejected for good) and False to stop (unreachable)."""
        report = ReplayReport()
        with self._locked(self._replay_lock_path, wait=False) as mine:
            if not mine:
                report.problems.append("another replay is running")
                return report
            taken = self._take()
            records: list[dict[str, Any]] = []
            for path in taken:
                records.extend(_read_records(path))
            done = 0
            for record in records:
                if not deliver(record):
                    break
                done += 1
            leftovers = records[done:]
            report.delivered = done
            report.remaining = len(leftovers)
            self._put_back(leftovers)
            for path in taken:
                path.unlink(missing_ok=True)
        return report

    def _take(self) -> list[Path]:
        """Move the spool aside; earlier takes left by a dead replayer come first."""
        with self._locked(self._lock_path):
            stale = sorted(self.path.parent.glob(self.path.name + ".replaying-*"))
            if self.path.exists():
                moved = self.path.with_name(f"{self.path.name}.replaying-{uuid.uuid4().hex}")
                os.replace(self.path, moved)
                return [*stale, moved]
            return stale

    def _put_back(self, leftovers: list[dict[str, Any]]) -> None:
        if not leftovers:
            return
        with self._locked(self._lock_path):
            newer = self.path.read_bytes() if self.path.exists() else b""
            older = b"".join(
                (json.dumps(r, separators=(",", ":")) + "\n").encode() for r in leftovers
            )
            _write_atomically(self.path, older + newer)


def _read_records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            print(f"session-buddy: skipping a torn spool line in {path}", file=sys.stderr)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _read_ids(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
