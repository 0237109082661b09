"""A plain in-memory model of DESIGN §3, written from the design and not from the code:
what each event must answer, and what must be stored afterwards (sessions and each
session's event log). `test_transition_model.py` drives random sequences of events
through the tools and holds the store to it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from session_buddy.timestamps import format_micros, from_micros

LOCAL = "the-local-host"  # replaced by platform.node() where the processes are real


class Mismatch(AssertionError):
    """The store did not do what the model says."""


def expect(actual: Any, expected: Any, what: str) -> None:
    if actual != expected:
        raise Mismatch(f"{what}: got {actual!r}, the model says {expected!r}")


@dataclass
class Kept:
    """A session as the model keeps it (times in UTC microseconds)."""

    session_id: str
    event_id: str
    component: str
    external_id: str | None
    pid: int | None
    hostname: str
    started: int
    last_seen: int
    received: int
    previous: str | None = None
    status: str = "active"
    ended: int | None = None
    duration: float | None = None
    end_reason: str | None = None
    activity: str | None = None
    activity_at: int | None = None

    @property
    def silent(self) -> bool:
        return self.status == "abandoned" and (self.end_reason or "").startswith("timeout")

    def abandon(self, reason: str) -> None:
        self.status, self.ended, self.end_reason = "abandoned", self.last_seen, reason
        self.duration = (self.last_seen - self.started) / 1e6


@dataclass
class Start:
    event_id: str
    component: str
    timestamp: int
    pid: int | None
    hostname: str
    external_id: str | None


@dataclass
class Model:
    now: int
    abandon_after: int
    local_host: str
    sessions: dict[str, Kept] = field(default_factory=dict)
    logs: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    orphans: list[int] = field(default_factory=list)  # receipt times of events of no session
    # An end's event id -> (the session id it was logged under, its first outcome, the
    # receipt of its last row when that has no session).
    ends: dict[str, tuple[str | None, str, int]] = field(default_factory=dict)
    resumes: dict[str, str] = field(default_factory=dict)  # resuming start -> session id

    def log(self, session_id: str | None, event_type: str, outcome: str) -> None:
        if session_id is None:
            self.orphans.append(self.now)
        else:
            self.logs[session_id].append((event_type, outcome))

    def of_external(self, external_id: str, started_by: int | None = None) -> Kept | None:
        """Its running session, else its latest (among those started by `started_by`)."""
        mine = [
            s
            for s in self.sessions.values()
            if s.external_id == external_id and (started_by is None or s.started <= started_by)
        ]
        running = [s for s in mine if s.status == "active"]
        if running:
            return running[0]
        return max(mine, key=lambda s: s.started, default=None)

    def supersede(self, hostname: str, pid: int | None, started: int, keep: str) -> None:
        if pid is None:
            return
        for s in self.sessions.values():
            same = (s.status, s.hostname, s.pid) == ("active", hostname, pid)
            if same and s.started <= started and s.session_id != keep:
                s.abandon(f"superseded by {keep}")
                self.log(s.session_id, "reap", "abandoned")

    def start(self, event: Start, answer: dict[str, Any]) -> None:
        expect(answer.get("status"), "tracked", "start status")
        for s in self.sessions.values():
            if s.event_id == event.event_id:
                expect(answer["session_id"], s.session_id, "a repeated start's session")
                self.log(s.session_id, "session_start", "duplicate")
                return
        previous = None
        if event.external_id is not None:
            resumed = self.resumes.get(event.event_id)
            if resumed in self.sessions:
                expect(answer["session_id"], resumed, "a repeated resume's session")
                self.log(resumed, "session_start", "duplicate")
                return
            target = self.of_external(event.external_id)
            if target is not None and target.status == "active":
                expect(answer["session_id"], target.session_id, "the running external session")
                if (target.hostname, target.pid) == (event.hostname, event.pid):
                    self.log(target.session_id, "session_start", "duplicate")
                    return
                target.pid, target.hostname, target.received = event.pid, event.hostname, self.now
                target.last_seen = max(target.last_seen, event.timestamp)
                self.supersede(event.hostname, event.pid, event.timestamp, target.session_id)
                self.resumes[event.event_id] = target.session_id
                self.log(target.session_id, "session_start", "resumed")
                return
            previous = target.session_id if target is not None else None
        session_id = str(answer["session_id"])
        base = _base(event.component, event.timestamp)
        if base in self.sessions:
            suffixed = re.fullmatch(re.escape(base) + r"-([2-9]|[1-9]\d+)", session_id)
            if suffixed is None or session_id in self.sessions:
                raise Mismatch(
                    f"new session id {session_id!r}: {base} is taken, expected a free -n"
                )
        else:
            expect(session_id, base, "a new session's id")
        self.sessions[session_id] = Kept(
            session_id,
            event.event_id,
            event.component,
            event.external_id,
            event.pid,
            event.hostname,
            event.timestamp,
            event.timestamp,
            self.now,
            previous=previous,
        )
        self.supersede(event.hostname, event.pid, event.timestamp, session_id)
        self.log(session_id, "session_start", "tracked")

    @staticmethod
    def last_word(target: Kept, timestamp: int | None, activity: str | None) -> bool:
        """A finished session's activity heard late: dated at or before its end, and not
        before the activity it has."""
        if target.status not in ("ended", "crashed") or target.ended is None:
            return False
        if activity is None or timestamp is None:
            return False
        newer = target.activity_at is None or timestamp >= target.activity_at
        return newer and timestamp <= target.ended

    def heartbeat(
        self,
        session_id: str | None,
        external_id: str | None,
        timestamp: int | None,
        activity: str | None,
        answer: dict[str, Any],
    ) -> None:
        if session_id is not None:
            target = self.sessions.get(session_id)
        else:
            target = self.of_external(str(external_id))
        if target is None:
            expect(answer.get("status"), "not_found", "heartbeat of no session")
            self.log(session_id, "heartbeat", "not_found")
            return
        seen = self.now if timestamp is None else timestamp
        news = timestamp is None or seen > target.last_seen
        sibling = any(
            s.status == "active" and s.external_id == target.external_id
            for s in self.sessions.values()
            if s is not target and target.external_id is not None
        )
        if target.status == "active" and news:
            outcome = "recorded"
        elif target.status == "active":
            outcome = "stale"
        elif self.last_word(target, timestamp, activity):
            outcome = "noted"
            target.activity, target.activity_at = activity, timestamp
        elif target.silent and news and not sibling:
            outcome = "revived"
            target.status, target.ended, target.duration, target.end_reason = (
                "active",
                None,
                None,
                None,
            )
        else:
            outcome = "ignored"
        if outcome in ("recorded", "revived"):
            target.last_seen, target.received = max(seen, target.last_seen), self.now
            if activity is not None:
                target.activity, target.activity_at = activity, target.last_seen
        said = "recorded" if target.status == "active" else "ignored"
        expect(
            (answer.get("status"), answer.get("session_id"), answer.get("session_status")),
            (said, target.session_id, target.status),
            "heartbeat answer",
        )
        self.log(target.session_id, "heartbeat", outcome)

    def end(
        self,
        session_id: str | None,
        external_id: str | None,
        timestamp: int,
        exit_code: int,
        event_id: str | None,
        answer: dict[str, Any],
    ) -> None:
        first = self.ends.get(event_id) if event_id is not None else None
        if first is not None:
            logged_as, first_outcome, _ = first
            target = self.sessions.get(logged_as) if logged_as is not None else None
            outcome = "not_found" if target is None else "duplicate"
            if target is None or first_outcome == "not_found":
                expect(answer.get("status"), "not_found", "a repeated end of no session")
            else:
                self._expect_ended(target, answer)
            self._log_end(logged_as, outcome, event_id)
            return
        if session_id is not None:
            target = self.sessions.get(session_id)
        else:
            target = self.of_external(str(external_id), started_by=timestamp)
        logged_as = target.session_id if target is not None else session_id
        if target is None:
            expect(answer.get("status"), "not_found", "end of no session")
            outcome = "not_found"
        elif target.status in ("ended", "crashed"):
            outcome = "duplicate"
        else:
            outcome = "crashed" if exit_code else "ended"
            target.status, target.ended = outcome, timestamp
            target.duration = max(0, timestamp - target.started) / 1e6
            target.end_reason = f"exit_code {exit_code}" if exit_code else None
        if target is not None:
            self._expect_ended(target, answer)
        self._log_end(logged_as, outcome, event_id)

    def _expect_ended(self, target: Kept, answer: dict[str, Any]) -> None:
        expect(
            (answer.get("status"), answer.get("session_id"), answer.get("session_status")),
            ("ended", target.session_id, target.status),
            "end answer",
        )
        close(answer.get("duration_seconds"), target.duration, "end answer's duration")

    def _log_end(self, logged_as: str | None, outcome: str, event_id: str | None) -> None:
        self.log(logged_as, "session_end", outcome)
        if event_id is None:
            return
        first = self.ends.get(event_id)
        if first is None:
            self.ends[event_id] = (logged_as, outcome, self.now)
        elif logged_as is None:
            self.ends[event_id] = (first[0], first[1], self.now)

    def reap(self, alive: Callable[[int], bool], answer: list[str]) -> None:
        cutoff = self.now - self.abandon_after
        abandoned = []
        for s in self.sessions.values():
            if s.status == "active" and s.received < cutoff:
                s.abandon(f"timeout (no event since {format_micros(s.received)})")
                abandoned.append(s.session_id)
        for s in self.sessions.values():
            local = s.hostname == self.local_host and s.pid is not None
            if s.status == "active" and local and not alive(int(s.pid or 0)):
                last = f"last activity {s.activity or 'start'} at "
                last += str(format_micros(s.activity_at or s.last_seen))
                s.abandon(f"process_gone (pid {s.pid} exited; {last})")
                abandoned.append(s.session_id)
        for session_id in abandoned:
            self.log(session_id, "reap", "abandoned")
        expect(sorted(answer), sorted(abandoned), "sessions the reaper abandoned")

    def prune(self, cutoff: int, sessions: int, events: int) -> None:
        gone = [
            s.session_id
            for s in self.sessions.values()
            if s.status != "active" and s.ended is not None and s.ended < cutoff
        ]
        old_orphans = [t for t in self.orphans if t < cutoff]
        counted = sum(len(self.logs.get(session_id, [])) for session_id in gone)
        expect((sessions, events), (len(gone), counted + len(old_orphans)), "pruned")
        for session_id in gone:
            del self.sessions[session_id]
            self.logs.pop(session_id, None)
        self.orphans = [t for t in self.orphans if t >= cutoff]
        self.ends = {
            event_id: first
            for event_id, first in self.ends.items()
            if first[0] not in gone and not (first[0] is None and first[2] < cutoff)
        }
        self.resumes = {e: s for e, s in self.resumes.items() if s not in gone}

    def check_records(self, records: list[dict[str, Any]]) -> None:
        expect(sorted(r["session_id"] for r in records), sorted(self.sessions), "stored sessions")
        for record in records:
            s = self.sessions[record["session_id"]]
            stored = {name: record[name] for name in _COMPARED}
            modelled = {
                "status": s.status,
                "pid": s.pid,
                "hostname": s.hostname,
                "external_id": s.external_id,
                "previous_session_id": s.previous,
                "started_at": format_micros(s.started),
                "ended_at": format_micros(s.ended),
                "last_seen_at": format_micros(s.last_seen),
                "end_reason": s.end_reason,
                "activity": s.activity,
                "activity_at": format_micros(s.activity_at),
            }
            expect(stored, modelled, f"stored session {s.session_id}")
            close(record["duration_seconds"], s.duration, f"{s.session_id}'s duration")

    def check_logs(self, rows: list[tuple[str | None, str, str]]) -> None:
        stored: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for session_id, event_type, outcome in rows:
            if session_id is not None:
                stored[session_id].append((event_type, outcome))
        expect(dict(stored), {k: v for k, v in self.logs.items() if v}, "event logs")
        orphans = sum(1 for session_id, _, _ in rows if session_id is None)
        expect(orphans, len(self.orphans), "events of no session")


_COMPARED = (
    "status",
    "pid",
    "hostname",
    "external_id",
    "previous_session_id",
    "started_at",
    "ended_at",
    "last_seen_at",
    "end_reason",
    "activity",
    "activity_at",
)


def close(actual: float | None, expected: float | None, what: str) -> None:
    if (actual is None) != (expected is None) or (
        actual is not None and expected is not None and abs(actual - expected) > 1e-6
    ):
        raise Mismatch(f"{what}: got {actual!r}, the model says {expected!r}")


def _base(component: str, started: int) -> str:
    return f"{component}-{from_micros(started):%Y%m%d-%H%M%S}"
