"""The session state machine as transactions, written once for every engine.

Each function runs inside one write transaction (see `Store.write`): it reads the
sessions an event is about (locking their rows where the engine needs it), asks the
transition table (`core/rules.py`) what to do, does it, and appends the event to the
event log in the same transaction. Correctness under concurrency comes from row locks,
constraints and statements that check their guard again, never from process-local locks,
so it holds with several server processes on one PostgreSQL database.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from session_buddy.core import alerts, usage
from session_buddy.core.errors import NotOwner
from session_buddy.core.records import SessionOrigin
from session_buddy.core.rules import Effect, Event, Facts, Rule, State, decide, state_of
from session_buddy.core.states import SessionStatus, classify_end, exit_code_of
from session_buddy.timestamps import format_micros, from_micros

TYPE_CHECKING = False  # see session_buddy.lazy: on the Claude Code hook's path
if TYPE_CHECKING:
    from typing import Any

    from session_buddy.core.store.base import Row, Tx

# Abandon, dated at the last activity; $1 is the end reason, $2 the session id.
_ABANDON = (
    "UPDATE sessions SET status = 'abandoned', ended_us = last_seen_us, "
    "duration_seconds = (last_seen_us - started_us) / 1000000.0, end_reason = $1 "
    "WHERE session_id = $2 AND status = 'active'"
)
# What the rules look at, and what an answer repeats.
_SESSION = (
    "SELECT session_id, event_id, status, end_reason, pid, hostname, started_us, "
    "last_seen_us, received_us, external_id, component_name, duration_seconds, owner, "
    "ended_us, activity_us FROM sessions"
)


class Actor(NamedTuple):
    """Who sends an event, when a verified token says: its subject, and whether it may
    change any session (an admin)."""

    subject: str
    admin: bool = False


def _foreign(session: Row | None, actor: Actor | None) -> bool:
    """Does `session` belong to another subject than a non-admin `actor`'s?"""
    if session is None or actor is None or actor.admin or session["owner"] is None:
        return False
    return bool(session["owner"] != actor.subject)


def _refuse(session: Row) -> NotOwner:
    return NotOwner(
        f"session {session['session_id']} was started with another subject's token: "
        "only that subject (or a sessions:admin token) may change it"
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class NewSession(NamedTuple):
    """A validated start; each field of its origin, and each field here but `payload` (the
    event as received, JSON text) and `parent_external_id` (the client's own id of the
    parent session, resolved to parent_session_id when stored), is the sessions column of
    the same name."""

    origin: SessionOrigin
    home: str
    started_us: int
    start_metadata: dict[str, Any]
    payload: str
    external_id: str | None = None
    previous_session_id: str | None = None
    parent_session_id: str | None = None
    parent_external_id: str | None = None
    owner: str | None = None  # the subject of the token that sends it, when one does

    def columns(self) -> dict[str, Any]:
        """The stored columns, by name, metadata as JSON text."""
        given = self.origin._asdict() | self._asdict()
        return {column: given[column] for column in _NEW_COLUMNS} | {
            "start_metadata": _json(self.start_metadata)
        }


_NOT_COLUMNS = ("origin", "payload", "parent_external_id")
_NEW_COLUMNS = (
    *SessionOrigin._fields,
    *(name for name in NewSession._fields if name not in _NOT_COLUMNS),
)
# $1 is the session id, then one placeholder per column, then the receipt time; a new
# session was last seen when it started.
_VALUES = {column: f"${number}" for number, column in enumerate(_NEW_COLUMNS, start=2)}
_INSERT = (
    f"INSERT INTO sessions (session_id, {', '.join(_NEW_COLUMNS)}, status, last_seen_us, "
    f"received_us) VALUES ($1, {', '.join(_VALUES.values())}, 'active', "
    f"{_VALUES['started_us']}, ${len(_VALUES) + 2}) ON CONFLICT DO NOTHING RETURNING session_id"
)


class SessionEnd(NamedTuple):
    """A validated end; its metadata decides between ended and crashed. Without a
    session id, the end is for the session of `external_id` (a client's own session id)
    that started by the end's time. `event_id`, when the client sends one, makes a
    second delivery of the same end change nothing."""

    session_id: str | None
    ended_us: int
    metadata: dict[str, Any]
    payload: str
    external_id: str | None = None
    event_id: str | None = None
    actor: Actor | None = None


class StartOutcome(NamedTuple):
    session_id: str
    created: bool
    # A repeated event id whose content differs: the fields that differ from the first.
    conflicts: tuple[str, ...] = ()
    resumed: bool = False  # a running session moved to the process that started it again


class EndOutcome(NamedTuple):
    session_id: str
    found: bool
    component_name: str | None = None
    changed: bool = False
    session_status: str | None = None
    duration_seconds: float | None = None
    clamped: bool = False


class HeartbeatOutcome(NamedTuple):
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
    if tx.observed is not None and session_id is not None:
        tx.observed.append(Logged(event_type, outcome, session_id, received_us, payload))


class Logged(NamedTuple):
    """An event as the event log took it, for whoever listens for transitions."""

    event_type: str
    outcome: str
    session_id: str
    received_us: int
    payload: str


def session_id_base(component_name: str, started_us: int) -> str:
    """`{component_name}-{YYYYMMDD-HHMMSS}` of the UTC start time, as the seed defines."""
    t = from_micros(started_us)  # strftime's %Y does not pad years before 1000
    return (
        f"{component_name}-{t.year:04d}{t.month:02d}{t.day:02d}-"
        f"{t.hour:02d}{t.minute:02d}{t.second:02d}"
    )


def _state(row: Row | None) -> State:
    return state_of(row["status"], row["end_reason"]) if row is not None else State.ABSENT


def _by_id(tx: Tx, session_id: str) -> Row | None:
    return tx.one(f"{_SESSION} WHERE session_id = $1{tx.lock_rows}", (session_id,))


def _by_external_id(tx: Tx, external_id: str, started_by_us: int | None = None) -> Row | None:
    """The running session of a client's own session id, else its latest; with
    `started_by_us`, only among those that started by then."""
    by = "" if started_by_us is None else " AND started_us <= $2"
    return tx.one(
        f"{_SESSION} WHERE external_id = $1{by} ORDER BY "
        "CASE WHEN status = 'active' THEN 0 ELSE 1 END, started_us DESC, session_id DESC "
        f"LIMIT 1{tx.lock_rows}",
        (external_id,) if started_by_us is None else (external_id, started_by_us),
    )


def _first_delivery(tx: Tx, event_id: str, outcome: str | None = None) -> Row | None:
    """The event log row of the first delivery of a resumed start (`outcome`) or of an
    end with this event id."""
    if outcome is not None:
        return tx.one(
            "SELECT session_id, outcome FROM events WHERE event_id = $1 AND outcome = $2 "
            "ORDER BY id LIMIT 1",
            (event_id, outcome),
        )
    return tx.one(
        "SELECT session_id, outcome FROM events WHERE event_id = $1 "
        "AND event_type = 'session_end' ORDER BY id LIMIT 1",
        (event_id,),
    )


def start_session(
    tx: Tx, new: NewSession, received_us: int, actor: Actor | None = None
) -> StartOutcome:
    """Create the session, or answer for the one this start is about (see the START rows
    of the table): a repeat of its event id, a repeat or a resume of a running external
    session. After an external session ended, the new one links to it."""
    # A start with no external id is taken to be new; the insert finds out otherwise.
    known = new.external_id is not None
    target, facts = _start_facts(tx, new, actor) if known else (None, Facts())
    decided = decide(_state(target), Event.START, facts)
    created = None
    if decided.effect is Effect.CREATE:
        created = _create(tx, new, target, received_us)
        if created is None:  # its event id, or a running session of its external id, came first
            target, facts = _start_facts(tx, new, actor)
            decided = decide(_state(target), Event.START, facts)
            if decided.effect is Effect.CREATE:
                event_id = new.origin.event_id
                raise RuntimeError(f"start {event_id}: the insert conflicts with no session")
    if decided.effect is Effect.REFUSE and target is not None:
        raise _refuse(target)
    if created is not None:
        outcome = StartOutcome(created, created=True)
    else:
        assert target is not None  # every rule but CREATE is about a stored session
        outcome = _answer_start(tx, new, target, decided, received_us)
    logged = "conflict" if outcome.conflicts else decided.outcome
    event_id = new.origin.event_id
    log_event(tx, received_us, "session_start", outcome.session_id, event_id, logged, new.payload)
    return outcome


def _start_facts(tx: Tx, new: NewSession, actor: Actor | None) -> tuple[Row | None, Facts]:
    """The session a start is about, and the facts the START rules look at."""
    first = tx.one(f"{_SESSION} WHERE event_id = $1{tx.lock_rows}", (new.origin.event_id,))
    if first is not None:
        return first, Facts(replayed=True, foreign=_foreign(first, actor))
    if new.external_id is None:
        return None, Facts()
    resumed = _first_delivery(tx, new.origin.event_id, "resumed")
    if resumed is not None:
        target = _by_id(tx, str(resumed["session_id"]))
        return target, Facts(replayed=True, foreign=_foreign(target, actor))
    target = _by_external_id(tx, new.external_id)
    where = (new.origin.hostname, new.origin.pid)
    same = target is not None and (target["hostname"], target["pid"]) == where
    return target, Facts(same_process=same, foreign=_foreign(target, actor))


def _answer_start(
    tx: Tx, new: NewSession, target: Row, decided: Rule, received_us: int
) -> StartOutcome:
    session_id = str(target["session_id"])
    if decided.effect is Effect.MOVE:
        tx.run(
            "UPDATE sessions SET pid = $1, hostname = $2, received_us = $3, "
            "last_seen_us = CASE WHEN $4 > last_seen_us THEN $4 ELSE last_seen_us END "
            "WHERE session_id = $5",
            (new.origin.pid, new.origin.hostname, received_us, new.started_us, session_id),
        )
        _supersede(tx, new, session_id, received_us)
        return StartOutcome(session_id, created=False, resumed=True)
    conflicts: tuple[str, ...] = ()
    if decided.effect is Effect.REPEAT and target["event_id"] == new.origin.event_id:
        conflicts = _conflicts(tx, new)
    return StartOutcome(session_id, created=False, conflicts=conflicts)


def _create(tx: Tx, new: NewSession, previous: Row | None, received_us: int) -> str | None:
    """Insert a new session (linked to the `previous` one of its external id, and to its
    parent); None when its event id, or a running session of its external id, is stored
    already (a concurrent writer came first)."""
    if previous is not None:
        new = new._replace(previous_session_id=str(previous["session_id"]))
    if new.parent_external_id is not None:
        parent = _by_external_id(tx, new.parent_external_id)
        if parent is not None:
            new = new._replace(parent_session_id=str(parent["session_id"]))
    session_id = _insert_with_unique_id(tx, new, received_us)
    if session_id is not None and new.parent_external_id is None:
        _supersede(tx, new, session_id, received_us)  # a subagent runs in its parent's process
    if session_id is not None and new.external_id is not None:
        usage.attach_waiting(tx, session_id, new.external_id)
    return session_id


# What a repeated start is compared on (its receipt time and links may differ).
_CONTENT = (
    *("component_name", "shell_type", "pid", "hostname", "username", "home", "cwd"),
    *("python_version", "platform", "started_us", "start_metadata"),
)


def _conflicts(tx: Tx, new: NewSession) -> tuple[str, ...]:
    """The fields in which a repeated start differs from the first one of its event id
    (not its process, once another process resumed the session)."""
    first = tx.one(
        f"SELECT session_id, {', '.join(_CONTENT)} FROM sessions WHERE event_id = $1",
        (new.origin.event_id,),
    )
    if first is None:
        return ()
    stored = dict(first) | {"start_metadata": json.loads(first["start_metadata"])}
    compared: tuple[str, ...] = _CONTENT
    if tx.one(
        "SELECT 1 FROM events WHERE session_id = $1 AND outcome = 'resumed'",
        (first["session_id"],),
    ):
        compared = tuple(name for name in _CONTENT if name not in ("pid", "hostname"))
    given = new.origin._asdict() | new._asdict()
    return tuple(name for name in compared if stored[name] != given[name])


def _supersede(tx: Tx, new: NewSession, session_id: str, received_us: int) -> None:
    """A start from a (hostname, pid) means the sessions that process ran before are over."""
    if new.origin.pid is None:
        return
    running = tx.all(
        f"{_SESSION} WHERE hostname = $1 AND pid = $2 AND status = 'active' "
        f"AND started_us <= $3 AND session_id <> $4{tx.lock_rows}",
        (new.origin.hostname, new.origin.pid, new.started_us, session_id),
    )
    for row in running:
        if decide(_state(row), Event.SUPERSEDE, Facts()).effect is Effect.ABANDON:
            _abandon(tx, str(row["session_id"]), f"superseded by {session_id}", received_us)


def _insert_with_unique_id(tx: Tx, new: NewSession, received_us: int) -> str | None:
    """Insert under the base id, else under the next free one (base-2, base-3, ...); the
    primary key decides between concurrent writers. None when this event id, or a
    running session of the same external id, is stored already."""
    base = session_id_base(new.origin.component_name, new.started_us)
    values = list(new.columns().values())
    session_id = base
    while True:
        if tx.one(_INSERT, (session_id, *values, received_us)) is not None:
            return session_id
        if tx.one("SELECT 1 FROM sessions WHERE event_id = $1", (new.origin.event_id,)) is not None:
            return None
        if new.external_id is not None and tx.one(
            "SELECT 1 FROM sessions WHERE external_id = $1 AND status = 'active'",
            (new.external_id,),
        ):
            return None
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
    """End the session an end is about (see the END rows of the table)."""
    first = _first_delivery(tx, end.event_id) if end.event_id else None
    if first is not None:
        target = _by_id(tx, str(first["session_id"])) if first["session_id"] else None
    elif end.session_id is not None:
        target = _by_id(tx, end.session_id)
    elif end.external_id is not None:
        target = _by_external_id(tx, end.external_id, started_by_us=end.ended_us)
    else:
        target = None
    status, reason = classify_end(end.metadata)
    facts = Facts(
        replayed=first is not None,
        abnormal_exit=status is SessionStatus.CRASHED,
        foreign=_foreign(target, end.actor),
    )
    decided = decide(_state(target), Event.END, facts)
    if decided.effect is Effect.REFUSE and target is not None:
        raise _refuse(target)
    session_id = str(target["session_id"]) if target is not None else end.session_id
    outcome = EndOutcome(session_id or "", found=False)
    if decided.effect is Effect.FINISH and session_id is not None:
        updated = tx.one(
            "UPDATE sessions SET status = $1, ended_us = $2, "
            "duration_seconds = CASE WHEN $2 >= started_us "
            "THEN ($2 - started_us) / 1000000.0 ELSE 0.0 END, "
            "end_reason = $3, exit_code = $4, end_metadata = $5 "
            "WHERE session_id = $6 RETURNING started_us, duration_seconds, component_name",
            (
                status.value,
                end.ended_us,
                reason,
                exit_code_of(end.metadata),
                _json(end.metadata),
                session_id,
            ),
        )
        assert updated is not None  # the row is locked since it was read
        if status is SessionStatus.CRASHED:
            alerts.raise_for_session(tx, "crashed", session_id, reason, received_us)
        outcome = EndOutcome(
            session_id,
            found=True,
            component_name=str(updated["component_name"]),
            changed=True,
            session_status=status.value,
            duration_seconds=float(updated["duration_seconds"]),
            clamped=end.ended_us < int(updated["started_us"]),
        )
    elif target is not None and not (first is not None and first["outcome"] == "not_found"):
        outcome = EndOutcome(
            str(target["session_id"]),
            found=True,
            component_name=str(target["component_name"]),
            session_status=str(target["status"]),
            duration_seconds=target["duration_seconds"],
        )
    log_event(
        tx, received_us, "session_end", session_id, end.event_id, decided.outcome, end.payload
    )
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
    live: bool = False,
    actor: Actor | None = None,
    detail: str | None = None,
) -> HeartbeatOutcome:
    """Refresh a session (see the HEARTBEAT rows of the table), and set what it is doing
    (`activity`) when given. Without a session id, the heartbeat is for the running (else
    latest) session of `external_id`. `live`: the heartbeat carries no time of its own
    (it is dated now), so it is news whatever the session's clock said before. `detail`
    says why the activity is what it is (a failure's reason); a new activity without one
    clears the last."""
    if session_id is not None:
        target = _by_id(tx, session_id)
    else:
        target = _by_external_id(tx, external_id) if external_id is not None else None
    state = _state(target)
    news = target is not None and (live or seen_us > target["last_seen_us"])
    sibling = state is State.SILENT and _active_sibling(tx, target)
    last_word = _last_word(target, seen_us, activity, live)
    foreign = _foreign(target, actor)
    facts = Facts(news=news, active_sibling=sibling, last_word=last_word, foreign=foreign)
    decided = decide(state, Event.HEARTBEAT, facts)
    if decided.effect is Effect.REFUSE and target is not None:
        raise _refuse(target)
    found_id = str(target["session_id"]) if target is not None else session_id
    if decided.effect is Effect.REFRESH and target is not None:
        tx.run(
            "UPDATE sessions SET status = 'active', ended_us = NULL, duration_seconds = NULL, "
            "end_reason = NULL, received_us = $1, last_seen_us = $2, "
            "activity = COALESCE($4, activity), "
            "activity_us = CASE WHEN $4 IS NULL THEN activity_us ELSE $2 END, "
            "activity_detail = CASE WHEN $4 IS NULL THEN activity_detail ELSE $5 END "
            "WHERE session_id = $3",
            (received_us, max(seen_us, target["last_seen_us"]), found_id, activity, detail),
        )
    if decided.effect is Effect.NOTE:
        tx.run(
            "UPDATE sessions SET activity = $1, activity_us = $2, activity_detail = $3 "
            "WHERE session_id = $4",
            (activity, seen_us, detail, found_id),
        )
    if activity == "failing" and decided.effect in (Effect.REFRESH, Effect.NOTE):
        alerts.raise_for_session(tx, "failing", str(found_id), detail, received_us)
    log_event(tx, received_us, "heartbeat", found_id, None, decided.outcome, _json(payload))
    if target is None:
        return HeartbeatOutcome(found_id or "", found=False)
    status = decided.to.value if decided.to is State.ACTIVE else str(target["status"])
    return HeartbeatOutcome(str(found_id), True, status)


def _last_word(session: Row | None, seen_us: int, activity: str | None, live: bool) -> bool:
    """Is this a dated activity from before the session ended, newer than its own?"""
    if session is None or activity is None or live or session["ended_us"] is None:
        return False
    newer = session["activity_us"] is None or seen_us >= session["activity_us"]
    return bool(newer and seen_us <= session["ended_us"])


def _active_sibling(tx: Tx, session: Row | None) -> bool:
    """Is another session of this one's external id active?"""
    if session is None or session["external_id"] is None:
        return False
    return (
        tx.one(
            "SELECT 1 FROM sessions WHERE external_id = $1 AND status = 'active' "
            "AND session_id <> $2",
            (session["external_id"], session["session_id"]),
        )
        is not None
    )


def _abandon(
    tx: Tx, session_id: str, reason: str, now_us: int, guard: str = "", params: tuple[Any, ...] = ()
) -> bool:
    """Abandon a session that is still active and still meets `guard` (SQL on $3, ...:
    the rule's guard, checked again in the statement that acts on it)."""
    if not tx.run(f"{_ABANDON}{guard}", (reason, session_id, *params)):
        return False
    log_event(tx, now_us, "reap", session_id, None, "abandoned", _json(reason))
    alerts.raise_for_session(tx, "abandoned", session_id, reason, now_us)
    return True


def abandon_silent(tx: Tx, cutoff_us: int, now_us: int) -> list[str]:
    """Abandon active sessions not heard from (server clock) since `cutoff_us`."""
    rows = tx.all(
        f"{_SESSION} WHERE status = 'active' AND received_us < $1{tx.lock_free_rows}",
        (cutoff_us,),
    )
    abandoned = []
    for row in rows:
        if decide(_state(row), Event.REAP, Facts(silent=True)).effect is not Effect.ABANDON:
            continue
        reason = f"timeout (no event since {format_micros(row['received_us'])})"
        session_id = str(row["session_id"])
        if _abandon(tx, session_id, reason, now_us, " AND received_us < $3", (cutoff_us,)):
            abandoned.append(session_id)
    return abandoned


class LocalSession(NamedTuple):
    """An active session of this host, with what the reaper needs to judge it."""

    session_id: str
    hostname: str
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
            hostname,
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


def abandon_gone(tx: Tx, gone: dict[LocalSession, str], now_us: int) -> list[str]:
    """Abandon the sessions whose process was found gone (`gone`: session -> why), if
    they still run in that process: a session resumed by another process meanwhile stays."""
    abandoned = []
    for session, why in gone.items():
        row = _by_id(tx, session.session_id)
        same = row is not None and (row["hostname"], row["pid"]) == (session.hostname, session.pid)
        if decide(_state(row), Event.REAP, Facts(process_gone=same)).effect is not Effect.ABANDON:
            continue
        guard, where = " AND hostname = $3 AND pid = $4", (session.hostname, session.pid)
        if _abandon(tx, session.session_id, gone_reason(session, why), now_us, guard, where):
            abandoned.append(session.session_id)
    return abandoned
