"""The session state machine as transactions, written once for every engine.

Each function runs inside one write transaction (see `Store.write`) and appends what it
did to the event log in that same transaction. Correctness under concurrency comes from
constraints and conditional updates, never from process-local locks, so it holds with
several server processes on one PostgreSQL database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any

from session_buddy.core.records import SessionOrigin
from session_buddy.core.states import classify_end, exit_code_of
from session_buddy.core.store.base import Row, Tx
from session_buddy.timestamps import format_micros, from_micros

# Abandon, dated at the last activity; $1 is the end reason.
_ABANDON = (
    "status = 'abandoned', ended_us = last_seen_us, "
    "duration_seconds = (last_seen_us - started_us) / 1000000.0, end_reason = $1"
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class NewSession(SessionOrigin):
    """A validated start; each field but `payload` (the event as received, JSON text) and
    `parent_external_id` (the client's own id of the parent session, resolved to
    parent_session_id when stored) is the sessions column of the same name."""

    home: str
    started_us: int
    start_metadata: dict[str, Any]
    payload: str
    external_id: str | None = None
    previous_session_id: str | None = None
    parent_session_id: str | None = None
    parent_external_id: str | None = None


_NOT_COLUMNS = ("payload", "parent_external_id")
_NEW_COLUMNS = tuple(f.name for f in fields(NewSession) if f.name not in _NOT_COLUMNS)
# $1 is the session id, then one placeholder per column, then the receipt time; a new
# session was last seen when it started.
_VALUES = {column: f"${number}" for number, column in enumerate(_NEW_COLUMNS, start=2)}
_INSERT = (
    f"INSERT INTO sessions (session_id, {', '.join(_NEW_COLUMNS)}, status, last_seen_us, "
    f"received_us) VALUES ($1, {', '.join(_VALUES.values())}, 'active', "
    f"{_VALUES['started_us']}, ${len(_VALUES) + 2}) ON CONFLICT DO NOTHING RETURNING session_id"
)


@dataclass(frozen=True)
class SessionEnd:
    """A validated end; its metadata decides between ended and crashed. Without a
    session id, the end is for the latest session of `external_id` (a client's own
    session id), whatever its state."""

    session_id: str | None
    ended_us: int
    metadata: dict[str, Any]
    payload: str
    external_id: str | None = None


@dataclass(frozen=True)
class StartOutcome:
    session_id: str
    created: bool
    # A repeated event id whose content differs: the fields that differ from the first.
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndOutcome:
    session_id: str
    found: bool
    component_name: str | None = None
    changed: bool = False
    session_status: str | None = None
    duration_seconds: float | None = None
    clamped: bool = False


@dataclass(frozen=True)
class HeartbeatOutcome:
    session_id: str
    found: bool
    session_status: str | None = None


def log_event(
    tx: Tx,
    received_us: int,
    event_type: str,
    session_id: str | None,
    event_id: str | None,
    outcome: str,
    payload: str,
) -> None:
    tx.run(
        "INSERT INTO events (received_us, event_type, session_id, event_id, outcome, payload) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        (received_us, event_type, session_id, event_id, outcome, payload),
    )


def session_id_base(component_name: str, started_us: int) -> str:
    """`{component_name}-{YYYYMMDD-HHMMSS}` of the UTC start time, as the seed defines."""
    t = from_micros(started_us)  # strftime's %Y does not pad years before 1000
    return (
        f"{component_name}-{t.year:04d}{t.month:02d}{t.day:02d}-"
        f"{t.hour:02d}{t.minute:02d}{t.second:02d}"
    )


def start_session(tx: Tx, new: NewSession, received_us: int) -> StartOutcome:
    """Create the session, or return the one this event id already created.

    With an external id (a client's own session id): a start while that external session
    is active returns it unchanged; after it ended, the new session links to the old one.
    """
    if new.external_id is not None:
        latest = _latest_external(tx, new.external_id)
        if latest is not None and latest["status"] != "active":
            new = replace(new, previous_session_id=str(latest["session_id"]))
    if new.parent_external_id is not None:
        parent = _latest_external(tx, new.parent_external_id)
        if parent is not None:
            new = replace(new, parent_session_id=str(parent["session_id"]))
    session_id, created = _insert_with_unique_id(tx, new, received_us)
    conflicts: tuple[str, ...] = ()
    if created:
        _supersede_same_process(tx, new, session_id, received_us)
    else:
        conflicts = _conflicts(tx, new)
    log_event(
        tx,
        received_us,
        "session_start",
        session_id,
        new.event_id,
        "tracked" if created else ("conflict" if conflicts else "duplicate"),
        new.payload,
    )
    return StartOutcome(session_id, created, conflicts)


# What a repeated start is compared on (its receipt time and links may differ).
_CONTENT = (
    *("component_name", "shell_type", "pid", "hostname", "username", "home", "cwd"),
    *("python_version", "platform", "started_us", "start_metadata"),
)


def _conflicts(tx: Tx, new: NewSession) -> tuple[str, ...]:
    """The fields in which a repeated start differs from the first one of its event id."""
    first = tx.one(
        f"SELECT {', '.join(_CONTENT)} FROM sessions WHERE event_id = $1", (new.event_id,)
    )
    if first is None:  # a repeat of a running external session, under a new event id
        return ()
    stored = dict(first) | {"start_metadata": json.loads(first["start_metadata"])}
    return tuple(name for name in _CONTENT if stored[name] != getattr(new, name))


def _latest_external(tx: Tx, external_id: str) -> Row | None:
    return tx.one(
        "SELECT session_id, status FROM sessions WHERE external_id = $1 "
        "ORDER BY started_us DESC, session_id DESC LIMIT 1",
        (external_id,),
    )


def _active_external(tx: Tx, external_id: str | None) -> str | None:
    if external_id is None:
        return None
    row = tx.one(
        "SELECT session_id FROM sessions WHERE external_id = $1 AND status = 'active'",
        (external_id,),
    )
    return str(row["session_id"]) if row else None


def _supersede_same_process(tx: Tx, new: NewSession, session_id: str, received_us: int) -> None:
    """A new start from the same (hostname, pid) means the previous session is gone;
    not for a child session (a subagent runs in its parent's process)."""
    if new.pid is None or new.parent_external_id is not None:
        return
    reason = f"superseded by {session_id}"
    superseded = tx.all(
        f"UPDATE sessions SET {_ABANDON} "
        "WHERE hostname = $2 AND pid = $3 AND status = 'active' AND started_us <= $4 "
        "AND session_id <> $5 RETURNING session_id",
        (reason, new.hostname, new.pid, new.started_us, session_id),
    )
    for row in superseded:
        log_event(tx, received_us, "reap", row["session_id"], None, "abandoned", _json(reason))


def _insert_with_unique_id(tx: Tx, new: NewSession, received_us: int) -> tuple[str, bool]:
    """Insert under the base id, else under the next free one (base-2, base-3, ...); the
    primary key decides between concurrent writers. (id, False) when this event id was
    already stored."""
    base = session_id_base(new.component_name, new.started_us)
    columns = (getattr(new, column) for column in _NEW_COLUMNS)
    values = [_json(value) if isinstance(value, dict) else value for value in columns]
    session_id = base
    while True:
        if tx.one(_INSERT, (session_id, *values, received_us)) is not None:
            return session_id, True
        existing = tx.one("SELECT session_id FROM sessions WHERE event_id = $1", (new.event_id,))
        if existing is not None:
            return str(existing["session_id"]), False
        running = _active_external(tx, new.external_id)
        if running is not None:
            return running, False
        session_id = f"{base}-{_free_suffix(tx, base)}"


def _free_suffix(tx: Tx, base: str) -> int:
    """The first n >= 2 with `base-n` free, when base-2 ... base-k are taken in a row
    (some n with `base-n` free if there are gaps), in about 2 log2 k lookups: many
    starts in one second cost each start a few reads, not one insert per taken id."""

    def taken(n: int) -> bool:
        return tx.one("SELECT 1 FROM sessions WHERE session_id = $1", (f"{base}-{n}",)) is not None

    low, high = 1, 2  # base-low is taken (1 stands for base itself); base-high is unknown
    while taken(high):
        low, high = high, 2 * high
    while high - low > 1:  # base-low taken, base-high free
        middle = (low + high) // 2
        low, high = (middle, high) if taken(middle) else (low, middle)
    return high


def end_session(tx: Tx, end: SessionEnd, received_us: int) -> EndOutcome:
    """End an active or abandoned session; an ended one stays as it is."""
    session_id = end.session_id
    if session_id is None:
        latest = _latest_external(tx, end.external_id) if end.external_id else None
        if latest is None:
            log_event(tx, received_us, "session_end", None, None, "not_found", end.payload)
            return EndOutcome("", found=False)
        session_id = str(latest["session_id"])
    status, reason = classify_end(end.metadata)
    updated = tx.one(
        "UPDATE sessions SET status = $1, ended_us = $2, "
        "duration_seconds = CASE WHEN $2 >= started_us "
        "THEN ($2 - started_us) / 1000000.0 ELSE 0.0 END, "
        "end_reason = $3, exit_code = $4, end_metadata = $5 "
        "WHERE session_id = $6 AND status IN ('active', 'abandoned') "
        "RETURNING started_us, duration_seconds, component_name",
        (
            status.value,
            end.ended_us,
            reason,
            exit_code_of(end.metadata),
            _json(end.metadata),
            session_id,
        ),
    )
    if updated is not None:
        outcome = EndOutcome(
            session_id,
            found=True,
            component_name=str(updated["component_name"]),
            changed=True,
            session_status=status.value,
            duration_seconds=float(updated["duration_seconds"]),
            clamped=end.ended_us < int(updated["started_us"]),
        )
    else:
        current = tx.one(
            "SELECT status, duration_seconds, component_name FROM sessions WHERE session_id = $1",
            (session_id,),
        )
        outcome = EndOutcome(
            session_id,
            found=current is not None,
            component_name=current["component_name"] if current else None,
            session_status=current["status"] if current else None,
            duration_seconds=current["duration_seconds"] if current else None,
        )
    unchanged = "duplicate" if outcome.found else "not_found"
    logged = status.value if outcome.changed else unchanged
    log_event(tx, received_us, "session_end", session_id, None, logged, end.payload)
    return outcome


def record_heartbeat(
    tx: Tx,
    session_id: str | None,
    seen_us: int,
    received_us: int,
    payload: dict[str, Any],
    *,
    activity: str | None = None,
    external_id: str | None = None,
) -> HeartbeatOutcome:
    """Refresh an active session, and set what it is doing (`activity`) when given.
    Without a session id, the heartbeat is for the latest session of `external_id`. It
    revives a session abandoned for silence, never one abandoned for another reason."""
    if session_id is None and external_id is not None:
        latest = _latest_external(tx, external_id)
        session_id = str(latest["session_id"]) if latest else None
    row = None
    if session_id is not None:
        row = tx.one(
            "UPDATE sessions SET status = 'active', ended_us = NULL, duration_seconds = NULL, "
            "end_reason = NULL, received_us = $1, "
            "last_seen_us = CASE WHEN $2 > last_seen_us THEN $2 ELSE last_seen_us END, "
            "activity = COALESCE($4, activity), "
            "activity_us = CASE WHEN $4 IS NULL THEN activity_us ELSE $2 END "
            "WHERE session_id = $3 AND (status = 'active' "
            "OR (status = 'abandoned' AND end_reason LIKE 'timeout%')) RETURNING status",
            (received_us, seen_us, session_id, activity),
        )
    current = None
    if row is None and session_id is not None:
        current = tx.one("SELECT status FROM sessions WHERE session_id = $1", (session_id,))
    if row is not None:
        outcome = HeartbeatOutcome(str(session_id), True, "active")
    else:
        status = str(current["status"]) if current else None
        outcome = HeartbeatOutcome(session_id or "", current is not None, status)
    log_event(
        tx,
        received_us,
        "heartbeat",
        session_id,
        None,
        "recorded" if row else "ignored" if outcome.found else "not_found",
        _json(payload),
    )
    return outcome


def abandon_stale(tx: Tx, cutoff_us: int, now_us: int) -> list[str]:
    """Abandon active sessions not heard from (server clock) since `cutoff_us`."""
    rows = tx.all(
        "SELECT session_id, received_us FROM sessions WHERE status = 'active' AND received_us < $1",
        (cutoff_us,),
    )
    reasons = {
        str(row["session_id"]): f"timeout (no event since {format_micros(row['received_us'])})"
        for row in rows
    }
    return abandon_sessions(tx, reasons, now_us)


@dataclass(frozen=True)
class LocalSession:
    """An active session of this host, with what the reaper needs to judge it."""

    session_id: str
    pid: int
    started_us: int
    last_activity: str
    last_activity_us: int


def active_on_host(tx: Tx, hostname: str) -> list[LocalSession]:
    """Every active session on one host whose pid is known."""
    rows = tx.all(
        "SELECT session_id, pid, started_us, activity, activity_us, last_seen_us FROM sessions "
        "WHERE hostname = $1 AND status = 'active' AND pid IS NOT NULL",
        (hostname,),
    )
    return [
        LocalSession(
            str(r["session_id"]),
            int(r["pid"]),
            int(r["started_us"]),
            str(r["activity"] or "start"),
            int(r["activity_us"] or r["last_seen_us"]),
        )
        for r in rows
    ]


def gone_reason(session: LocalSession, why: str) -> str:
    """The end reason of a session whose process is gone (with its evidence, DESIGN §3)
    or whose pid now belongs to a newer process (`pid_reused`)."""
    if why != "process_gone":
        return why
    last = f"last activity {session.last_activity} at {format_micros(session.last_activity_us)}"
    return f"process_gone (pid {session.pid} exited; {last})"


def abandon_sessions(tx: Tx, reasons: dict[str, str], now_us: int) -> list[str]:
    """Abandon the given sessions if they are still active; return those abandoned."""
    abandoned = []
    for session_id, reason in reasons.items():
        if tx.run(
            f"UPDATE sessions SET {_ABANDON} WHERE session_id = $2 AND status = 'active'",
            (reason, session_id),
        ):
            log_event(tx, now_us, "reap", session_id, None, "abandoned", _json(reason))
            abandoned.append(session_id)
    return abandoned
