"""The transition table: what every event does to a session, in one place.

Each row is one rule of DESIGN §3: an event, the states it applies in and a guard (facts
that must hold) lead to a new state, an outcome (answered and logged) and an effect (what
is written). `decide` takes the first row that matches, so where two rules meet (a revive
and a newer session of the same external id, a resume and the reaper, a replayed end and
a resumed session, retention and a revive) the order of the rows says which one wins.

`core/transitions.py` reads the session inside the write transaction (locking its row
where the engine needs it), gathers the facts, asks `decide`, and carries out the effect;
effects that race with other writers (abandon, delete) check their guard again in their
own statement. No other module decides a session's state.

Retries are not rows: a transaction whose COMMIT was lost is asked about, not run again
(`core/store/postgres.py`), and a client that sends an event again meets the `replayed`
rows.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class State(StrEnum):
    ABSENT = "absent"  # no such session: never started, or pruned
    ACTIVE = "active"
    ENDED = "ended"
    CRASHED = "crashed"
    SILENT = "abandoned (silent)"  # a heartbeat may revive it
    GONE = "abandoned (gone)"  # exited, pid reused or superseded: final until an end


class Event(StrEnum):
    START = "start"
    HEARTBEAT = "heartbeat"
    END = "end"  # by session id, or by external id: its session that started by then
    REAP = "reap"  # the reaper: silent for abandon_after, or its local process gone
    SUPERSEDE = "supersede"  # a newer start from the same host and pid
    PRUNE = "prune"  # retention at a cutoff


SENT_BY_CLIENTS = (Event.START, Event.HEARTBEAT, Event.END)  # the rest is the server's upkeep


class Effect(StrEnum):
    NOTHING = "nothing"  # only the event log row
    CREATE = "create"  # a new session, linked to the previous one of its external id
    MOVE = "move"  # the session now runs in the starting process (host, pid)
    REFRESH = "refresh"  # last seen, receipt, activity; clears an abandonment (revive)
    NOTE = "note"  # the activity only: what a finished session did last, heard late
    FINISH = "finish"  # dated at the end's time, with duration, reason and exit code
    ABANDON = "abandon"  # dated at its last activity, with the evidence
    DELETE = "delete"  # the session and its event log
    REPEAT = "repeat"  # answer what the first delivery of this event id was answered
    REFUSE = "refuse"  # nothing: the caller may not change this session


class Facts(NamedTuple):
    """What guards look at, gathered in the transaction that applies the rule."""

    foreign: bool = False  # it belongs to another token subject, and the caller is no admin
    replayed: bool = False  # this event id was applied before
    same_process: bool = False  # a start from the host and pid the session runs in
    news: bool = False  # a heartbeat dated after all else heard of the session, or undated
    active_sibling: bool = False  # another session of its external id is active
    last_word: bool = False  # an activity dated at or before the session's end, and after
    # the activity it has (Claude Code does not wait for StopFailure before SessionEnd)
    abnormal_exit: bool = False  # the end's exit code or reason says crash
    silent: bool = False  # nothing received (server clock) since the reaper's cutoff
    process_gone: bool = False  # its process on this host exited, or its pid was reused
    quiet_before_cutoff: bool = False  # its last activity is before the retention cutoff


FACTS = frozenset(Facts._fields)


class Rule(NamedTuple):
    event: Event
    states: frozenset[State]
    when: tuple[str, ...]  # facts that must hold ("not x": must not); empty: always
    to: State | None  # None: the state stays
    outcome: str
    effect: Effect

    def holds(self, facts: Facts) -> bool:
        for condition in self.when:
            name = condition.removeprefix("not ")
            if getattr(facts, name) == (name != condition):
                return False
        return True


def rule(
    event: Event, states: set[State], when: str, to: State | None, outcome: str, effect: Effect
) -> Rule:
    conditions = tuple(part.strip() for part in when.split(",") if part.strip())
    unknown = [c for c in conditions if c.removeprefix("not ") not in FACTS]
    if unknown:
        raise ValueError(f"unknown fact(s) in a rule: {', '.join(unknown)}")
    return Rule(event, frozenset(states), conditions, to, outcome, effect)


S = State
RUNNING = {S.ACTIVE}
ABANDONED = {S.SILENT, S.GONE}
FINISHED = {S.ENDED, S.CRASHED}
STORED = RUNNING | ABANDONED | FINISHED

RULES: tuple[Rule, ...] = (
    # A session started with a token is changed only with a token of the same subject
    # (or an admin's).
    *(
        rule(event, STORED, "foreign", None, "forbidden", Effect.REFUSE)
        for event in SENT_BY_CLIENTS
    ),
    # A start's session: the one its event id made, else the running (else the latest)
    # session of its external id, else none.
    rule(Event.START, STORED, "replayed", None, "duplicate", Effect.REPEAT),
    rule(Event.START, {S.ABSENT}, "", S.ACTIVE, "tracked", Effect.CREATE),
    rule(Event.START, RUNNING, "same_process", None, "duplicate", Effect.NOTHING),
    rule(Event.START, RUNNING, "", S.ACTIVE, "resumed", Effect.MOVE),
    rule(Event.START, ABANDONED | FINISHED, "", S.ACTIVE, "tracked", Effect.CREATE),
    # A heartbeat's session: by id, else the running (else the latest) of its external id.
    rule(Event.HEARTBEAT, RUNNING, "news", S.ACTIVE, "recorded", Effect.REFRESH),
    rule(Event.HEARTBEAT, RUNNING, "", None, "stale", Effect.NOTHING),
    rule(
        Event.HEARTBEAT, {S.SILENT}, "news, not active_sibling", S.ACTIVE, "revived", Effect.REFRESH
    ),
    rule(Event.HEARTBEAT, FINISHED, "last_word", None, "noted", Effect.NOTE),
    rule(Event.HEARTBEAT, ABANDONED | FINISHED, "", None, "ignored", Effect.NOTHING),
    rule(Event.HEARTBEAT, {S.ABSENT}, "", None, "not_found", Effect.NOTHING),
    # An end's session: by id; by external id, the running (else the latest) of those that
    # started at or before the end's time, so an end never ends a later session.
    rule(Event.END, STORED, "replayed", None, "duplicate", Effect.REPEAT),
    rule(Event.END, RUNNING | ABANDONED, "abnormal_exit", S.CRASHED, "crashed", Effect.FINISH),
    rule(Event.END, RUNNING | ABANDONED, "", S.ENDED, "ended", Effect.FINISH),
    rule(Event.END, FINISHED, "", None, "duplicate", Effect.NOTHING),
    rule(Event.END, {S.ABSENT}, "", None, "not_found", Effect.NOTHING),
    # Upkeep.
    rule(Event.REAP, RUNNING, "silent", S.SILENT, "abandoned", Effect.ABANDON),
    rule(Event.REAP, RUNNING, "process_gone", S.GONE, "abandoned", Effect.ABANDON),
    rule(Event.SUPERSEDE, RUNNING, "", S.GONE, "abandoned", Effect.ABANDON),
    rule(
        Event.PRUNE, ABANDONED | FINISHED, "quiet_before_cutoff", S.ABSENT, "pruned", Effect.DELETE
    ),
)


def decide(state: State, event: Event, facts: Facts) -> Rule:
    """The first rule for `event` in `state` whose guard holds; else nothing changes."""
    for candidate in RULES:
        if candidate.event is event and state in candidate.states and candidate.holds(facts):
            return candidate
    return Rule(event, frozenset({state}), (), None, "unchanged", Effect.NOTHING)


def state_of(status: str | None, end_reason: str | None) -> State:
    """A stored session's state (None: there is no session)."""
    if status is None:
        return State.ABSENT
    if status == "abandoned":
        return State.SILENT if (end_reason or "").startswith("timeout") else State.GONE
    return State(status)


def table() -> list[tuple[str, str, str, str, str, str]]:
    """The rules as text rows, for people (ARCHITECTURE.md prints them)."""
    rows = []
    for row in RULES:
        named = ", ".join(state.value for state in State if state in row.states)
        states = "any stored" if row.states == STORED else named
        to = row.to.value if row.to else "(same)"
        when = ", ".join(row.when) or "-"
        rows.append((row.event.value, states, when, to, row.outcome, row.effect.value))
    return rows
