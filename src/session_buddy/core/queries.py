"""Read side: session records, filtered pages with cursors, and grouped statistics."""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from session_buddy.core import usage
from session_buddy.core.errors import InvalidArgument
from session_buddy.core.records import (
    BUCKETS,
    GROUP_KEYS,
    GROUP_USAGE,
    RECORD_COLUMNS,
    stats_group,
    to_record,
)
from session_buddy.core.states import SessionStatus
from session_buddy.core.store.base import Row, Tx
from session_buddy.timestamps import format_micros

MAX_PAGE = 500
DEFAULT_PAGE = 50


class Params:
    """Collects query parameters and hands out their numbered placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def fetch_session(tx: Tx, session_id: str) -> dict[str, Any] | None:
    """A session's record, with its usage by model, tool and error."""
    row = tx.one(f"SELECT {RECORD_COLUMNS} FROM sessions WHERE session_id = $1", (session_id,))
    return to_record(row) | {"usage": usage.of_session(tx, session_id)} if row else None


LINKS = {"continued_by": "previous_session_id", "subagents": "parent_session_id"}


def linked_to(tx: Tx, session_id: str, limit: int) -> dict[str, list[dict[str, Any]]]:
    """The sessions that continue this one (a resume, a fork) and its subagents, oldest
    first, at most `limit` of each."""
    return {
        name: with_usage(
            tx,
            tx.all(
                f"SELECT {RECORD_COLUMNS} FROM sessions WHERE {column} = $1 "
                "ORDER BY started_us, session_id LIMIT $2",
                (session_id, limit),
            ),
        )
        for name, column in LINKS.items()
    }


def with_usage(tx: Tx, rows: list[Row]) -> list[dict[str, Any]]:
    """Rows selected with RECORD_COLUMNS as records, each with its usage sums."""
    sums = usage.summaries(tx, [str(row["session_id"]) for row in rows])
    return [to_record(row) | {"usage": sums.get(str(row["session_id"]))} for row in rows]


# Logged events that change a session, by the names OpenTelemetry's session
# conventions give them (and ours where they have none).
TRANSITIONS = {
    ("session_start", "tracked"): "session.start",
    ("session_start", "resumed"): "session_buddy.session.resume",
    ("session_end", "ended"): "session.end",
    ("session_end", "crashed"): "session.end",
    ("reap", "abandoned"): "session.end",
    ("heartbeat", "revived"): "session_buddy.session.revive",
}
ACTIVITY_CHANGE = "session_buddy.session.activity"


def transitions_seen(tx: Tx, logged: list[Any]) -> list[dict[str, Any]]:
    """The transitions among events just logged (core.transitions.Logged), each with
    the session's record as it is now: {"event", "outcome", "time_us", "record"}."""
    seen = []
    for event in logged:
        name = TRANSITIONS.get((event.event_type, event.outcome))
        says_activity = '"activity"' in event.payload
        if name is None and event.outcome in ("recorded", "noted") and says_activity:
            name = ACTIVITY_CHANGE
        record = fetch_session(tx, event.session_id) if name is not None else None
        if record is not None:
            seen.append(
                {
                    "event": name,
                    "outcome": event.outcome,
                    "time_us": event.received_us,
                    "record": record,
                }
            )
    return seen


def session_events(
    tx: Tx, session_id: str, after_id: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """A session's event log in the order it was written, payloads as received: the
    events after `after_id`, at most `limit` of them (all without one)."""
    rows = tx.all(
        "SELECT id, received_us, event_type, event_id, outcome, payload FROM events "
        "WHERE session_id = $1 AND id > $2 ORDER BY id" + ("" if limit is None else " LIMIT $3"),
        (session_id, after_id) if limit is None else (session_id, after_id, limit),
    )
    return [
        {
            "id": int(row["id"]),
            "received_at": format_micros(int(row["received_us"])),
            "event_type": row["event_type"],
            "event_id": row["event_id"],
            "outcome": row["outcome"],
            "payload": json.loads(row["payload"]),
        }
        for row in rows
    ]


def count_active(tx: Tx) -> int:
    row = tx.one("SELECT COUNT(*) AS n FROM sessions WHERE status = 'active'")
    return int(row["n"]) if row else 0


NEEDS_SOMEONE = ("waiting_for_input", "failing")


def needing_someone(tx: Tx, limit: int) -> list[str]:
    """Active sessions waiting for input or failing, longest first (at most `limit`)."""
    rows = tx.all(
        "SELECT session_id FROM sessions WHERE activity IN ($1, $2) AND status = 'active' "
        "ORDER BY activity_us, session_id LIMIT $3",
        (*NEEDS_SOMEONE, limit),
    )
    return [str(row["session_id"]) for row in rows]


@dataclass(frozen=True)
class SessionFilter:
    """Validated list_sessions arguments; times are UTC microseconds."""

    equals: dict[str, str]
    started_after_us: int | None
    started_before_us: int | None
    limit: int
    cursor: tuple[int, str] | None


def most_frequent_components(tx: Tx, limit: int) -> list[str]:
    """The component names with the most sessions, most first (an index-only scan)."""
    rows = tx.all(
        "SELECT component_name FROM sessions GROUP BY component_name "
        "ORDER BY COUNT(*) DESC, component_name LIMIT $1",
        (limit,),
    )
    return [str(row["component_name"]) for row in rows]


def encode_cursor(started_us: int, session_id: str) -> str:
    raw = json.dumps([started_us, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_us, session_id = json.loads(raw)
        if (
            isinstance(started_us, bool)
            or not isinstance(started_us, int)
            or not 0 <= started_us < 2**63
            or not isinstance(session_id, str)
        ):
            raise ValueError
        return started_us, session_id
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument(
            "cursor", f"Invalid cursor {cursor!r}: pass next_cursor from a previous page"
        ) from exc


def check_status_filter(status: str) -> str:
    if status not in {s.value for s in SessionStatus}:
        states = ", ".join(s.value for s in SessionStatus)
        raise InvalidArgument("status", f"Invalid status filter {status!r}: use one of {states}")
    return status


UNINDEXED = " || ''"  # an expression, not the column: SQLite leaves its index alone


def _equal(param: Params, column: str, value: str, *, indexed: bool = True) -> str:
    """`column = value`; for status, in the form that lets SQLite use the partial indexes
    (of active sessions, or of finished ones: see migration 4). Not `indexed`, in a form
    no index serves."""
    if not indexed:
        return f"{column}{UNINDEXED} = {param(value)}"
    if column == "status":
        if value == SessionStatus.ACTIVE:
            return "status = 'active'"
        return f"status = {param(value)} AND status <> 'active'"
    return f"{column} = {param(value)}"


def _window(
    param: Params, since_us: int | None, until_us: int | None, *, indexed: bool = True
) -> list[str]:
    start = "started_us" if indexed else "started_us + 0"
    clauses = []
    if since_us is not None:
        clauses.append(f"{start} >= {param(since_us)}")
    if until_us is not None:
        clauses.append(f"{start} < {param(until_us)}")
    return clauses


PROBE_ROWS = 100_000


def _driving_filter(tx: Tx, equals: dict[str, str]) -> str | None:
    """With several equality filters, the one whose index a SQLite page should walk.

    SQLite has no statistics here (a full ANALYZE of a big store holds the write lock for
    seconds), so it may walk the biggest of the filters' indexes: every session of the
    one user of a machine, to find its crashed ones. Count each filter's matches from its
    index alone, up to the fewest found so far (at most PROBE_ROWS), and walk the filter
    with the fewest. PostgreSQL plans by its own statistics."""
    if tx.dialect != "sqlite" or len(equals) < 2:
        return None
    driving, fewest = None, PROBE_ROWS + 1
    for column, value in equals.items():
        param = Params()
        probe = f"SELECT 1 FROM sessions WHERE {_equal(param, column, value)} LIMIT {fewest}"
        row = tx.one(f"SELECT COUNT(*) AS n FROM ({probe}) AS matches", param.values)
        if row is not None and int(row["n"]) < fewest:
            driving, fewest = column, int(row["n"])
    return driving


def list_sessions(tx: Tx, spec: SessionFilter) -> dict[str, Any]:
    """One page, newest first, and the cursor of the next page (None at the end)."""
    param = Params()
    driving = _driving_filter(tx, spec.equals)
    clauses = [
        _equal(param, column, value, indexed=driving in (None, column))
        for column, value in spec.equals.items()
    ]
    clauses += _window(param, spec.started_after_us, spec.started_before_us)
    if spec.cursor is not None:
        started, session_id = param(spec.cursor[0]), param(spec.cursor[1])
        clauses.append(
            f"(started_us < {started} OR (started_us = {started} AND session_id < {session_id}))"
        )
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = tx.all(
        f"SELECT {RECORD_COLUMNS} FROM sessions {where} "
        f"ORDER BY started_us DESC, session_id DESC LIMIT {param(spec.limit + 1)}",
        param.values,
    )
    page = rows[: spec.limit]
    next_cursor = None
    if len(rows) > spec.limit:
        last = page[-1]
        next_cursor = encode_cursor(int(last["started_us"]), str(last["session_id"]))
    return {"sessions": with_usage(tx, page), "next_cursor": next_cursor}


def check_group_by(group_by: str | None) -> str | None:
    if group_by is not None and group_by not in GROUP_KEYS:
        raise InvalidArgument(
            "group_by", f"Invalid group_by {group_by!r}: use one of {', '.join(GROUP_KEYS)}"
        )
    return group_by


def check_bucket(bucket: str | None) -> str | None:
    if bucket is not None and bucket not in BUCKETS:
        raise InvalidArgument(
            "bucket", f"Invalid bucket {bucket!r}: use one of {', '.join(BUCKETS)}"
        )
    return bucket


# 1970-01-05 was a Monday: weeks are counted from there.
_WEEK_ORIGIN_US = 4 * 86_400_000_000


@dataclass(frozen=True)
class StatsSpec:
    """Validated session_stats arguments: a grouping and/or a time bucket, filters."""

    group_by: str | None
    bucket: str | None
    equals: dict[str, str]
    since_us: int | None
    until_us: int | None
    percentiles: bool = True  # p50/p95 cost two indexed reads per group; charts skip them

    def groups(self) -> list[str | None]:
        """The SQL expressions sessions are grouped by: key, then bucket start (None for
        one not asked for)."""
        bucket = None
        if self.bucket is not None:
            size, origin = BUCKETS[self.bucket], _WEEK_ORIGIN_US if self.bucket == "week" else 0
            bucket = f"((started_us - {origin}) / {size}) * {size} + {origin}"
        return [self.group_by, bucket]

    def where(self, param: Params, *, indexed: bool = True) -> str:
        """The filters and the window as ` AND ...` clauses; not `indexed`, they leave
        the choice of index to another clause."""
        clauses = [
            _equal(param, column, value, indexed=indexed) for column, value in self.equals.items()
        ]
        clauses += _window(param, self.since_us, self.until_us, indexed=indexed)
        return "".join(f" AND {clause}" for clause in clauses)


Group = tuple[Any, Any]  # (key, bucket start); None for the one not asked for


def state_counts(tx: Tx, spec: StatsSpec) -> dict[Group, dict[str, Any]]:
    """Sessions per state, and the clean-exit seconds, per group, in group order."""
    key = spec.groups()[0]
    if spec.since_us is not None:
        # `|| ''` keeps the planner from scanning a (key, status) index whole to group,
        # when the window lets it read only the window's rows by start time.
        key = f"{key} || ''" if key else None
        rows = _grouped_counts(tx, spec, key, "status || ''", "", indexed=True)
    else:
        # Finished sessions from the (key, status, ...) indexes alone; the few active ones
        # by their own partial indexes, whatever else is filtered on.
        rows = _grouped_counts(tx, spec, key, "status", " AND status <> 'active'", indexed=True)
        key = f"{key} || ''" if key else None  # grouping by it must not walk its index
        rows += _grouped_counts(tx, spec, key, "'active'", " AND status = 'active'", indexed=False)
    counts: dict[Group, dict[str, Any]] = {}
    for row in rows:
        group = counts.setdefault((row["key"], row["bucket"]), {"seconds": 0.0})
        group[row["status"]] = int(row["n"])
        if row["status"] == SessionStatus.ENDED:
            group["seconds"] = float(row["seconds"] or 0.0)
    return dict(sorted(counts.items(), key=_group_order))


def _grouped_counts(
    tx: Tx, spec: StatsSpec, key: str | None, state: str, only: str, *, indexed: bool
) -> list[Row]:
    """COUNT and SUM(duration_seconds) per key, bucket and `state` of the sessions that
    match the spec and `only`; not `indexed`, the spec's clauses leave the choice of
    index to `only`."""
    param = Params()
    where = spec.where(param, indexed=indexed)
    bucket = spec.groups()[1]
    # A constant state is not grouped by (PostgreSQL refuses constants in GROUP BY).
    by_state = state if not state.startswith("'") else None
    grouped = ", ".join(expression for expression in (key, bucket, by_state) if expression)
    rows = tx.all(
        f"SELECT {key or 'NULL'} AS key, {bucket or 'NULL'} AS bucket, {state} AS status, "
        f"COUNT(*) AS n, SUM(duration_seconds) AS seconds FROM sessions "
        f"WHERE 1 = 1{only}{where}{' GROUP BY ' + grouped if grouped else ''}",
        param.values,
    )
    return [row for row in rows if row["n"]]  # no GROUP BY: one row, even of none


def _group_order(item: tuple[Group, Any]) -> tuple[bool, Any, bool, Any]:
    """Groups by key, then bucket (None, for one not asked for, is never mixed in)."""
    (key, bucket), _ = item
    return (key is None, key or "", bucket is None, bucket or 0)


def window_durations(tx: Tx, spec: StatsSpec) -> dict[Group, list[float]]:
    """The durations of a window's cleanly ended sessions per group, each list sorted.

    One read of the window and a sort here costs far less than two ranked reads per
    group: the (key, status, duration) index cannot seek by start time, so each ranked
    read would sort the window again."""
    key, bucket = spec.groups()
    param = Params()
    rows = tx.all(
        f"SELECT {key or 'NULL'} AS key, {bucket or 'NULL'} AS bucket, duration_seconds "
        f"FROM sessions WHERE status = 'ended' AND status <> 'active'{spec.where(param)}",
        param.values,
    )
    durations: dict[Group, list[float]] = {}
    for row in rows:
        durations.setdefault((row["key"], row["bucket"]), []).append(row["duration_seconds"])
    for values in durations.values():
        values.sort()
    return durations


def nearest_rank(values: list[float], percent: int) -> float | None:
    """The nearest-rank percentile of sorted `values`: the ceil(p% of n)-th."""
    return float(values[(len(values) * percent + 99) // 100 - 1]) if values else None


Percentile = Callable[[int], float | None]


def session_stats(tx: Tx, spec: StatsSpec) -> list[dict[str, Any]]:
    """Per group (and time bucket): state counts, clean-exit duration mean/p50/p95,
    crash and abandon rates.

    Percentiles are nearest-rank over sessions that ended cleanly: over all time each is
    read by an offset into the group's (key, status, duration) index; within a window
    from the window's durations, read once.
    """
    counts = state_counts(tx, spec)
    used = usage_totals(tx, spec)
    windowed = spec.percentiles and spec.since_us is not None
    durations = window_durations(tx, spec) if windowed else {}

    def percentile(group: Group) -> Percentile | None:
        if not spec.percentiles:
            return None
        if windowed:
            return lambda percent: nearest_rank(durations.get(group, []), percent)
        ended = int(counts[group].get(SessionStatus.ENDED, 0))
        return lambda percent: _nth_duration(tx, spec, group, (ended * percent + 99) // 100 - 1)

    return [
        _group_stats(group, counts[group], percentile(group), used.get(group)) for group in counts
    ]


# Sessions with reported usage are few beside all sessions: read them first, and each
# one's session by its key (SQLite takes CROSS JOIN as that order; PostgreSQL plans it
# as any join). Reading a window's sessions first and probing for usage cost a 30-day
# dashboard page ~13 ms at 1,000,000 sessions.
_USAGE_FIRST = "session_usage u CROSS JOIN sessions WHERE sessions.session_id = u.session_id"


def usage_totals(tx: Tx, spec: StatsSpec) -> dict[Group, dict[str, Any]]:
    """The cost and tokens of the sessions that match the spec, per group."""
    key, bucket = spec.groups()
    param = Params()
    grouped = ", ".join(expression for expression in (key, bucket) if expression)
    sums = ", ".join(f"SUM(u.{name}) AS {name}" for name in GROUP_USAGE)
    rows = tx.all(
        f"SELECT {key or 'NULL'} AS key, {bucket or 'NULL'} AS bucket, {sums} "
        f"FROM {_USAGE_FIRST}{spec.where(param)}"
        f"{' GROUP BY ' + grouped if grouped else ''}",
        param.values,
    )
    return {
        (row["key"], row["bucket"]): {
            name: float(row[name]) if name == "cost_usd" else int(row[name]) for name in GROUP_USAGE
        }
        for row in rows
        if row["cost_usd"] is not None
    }


def summarize(
    counts: dict[Group, dict[str, Any]], durations: dict[Group, list[float]]
) -> dict[str, Any]:
    """A dashboard's aggregates of one window from its counts per (key, bucket) and its
    durations per key: stats per key, per bucket (no percentiles), per key and bucket,
    and over all, and the duration histogram."""
    every = sorted(chain.from_iterable(durations.values()))
    per_key: dict[Group, dict[str, Any]] = {}
    per_bucket: dict[Group, dict[str, Any]] = {}
    series: dict[Any, list[dict[str, Any]]] = {}
    total: dict[str, Any] = {}
    for (key, bucket), states in counts.items():
        series.setdefault(key, []).append(_group_stats((key, bucket), states, None))
        for into in (
            per_key.setdefault((key, None), {}),
            per_bucket.setdefault((None, bucket), {}),
            total,
        ):
            for state, number in states.items():
                into[state] = into.get(state, 0) + number

    def ranked(values: list[float]) -> Percentile:
        return lambda percent: nearest_rank(values, percent)

    return {
        "groups": [_group_stats(g, c, ranked(durations.get(g, []))) for g, c in per_key.items()],
        "buckets": [
            _group_stats(g, c, None) for g, c in sorted(per_bucket.items(), key=_group_order)
        ],
        "total": _group_stats((None, None), total, ranked(every)) if total else None,
        "histogram": _histogram(every),
        "series": series,  # each key's buckets, for a chart per key
    }


# Duration histogram bins of cleanly ended sessions: (upper bound in seconds, label).
DURATION_BINS: tuple[tuple[float | None, str], ...] = (
    (1, "< 1 s"),
    (10, "< 10 s"),
    (60, "< 1 min"),
    (300, "< 5 min"),
    (900, "< 15 min"),
    (3600, "< 1 h"),
    (14400, "< 4 h"),
    (86400, "< 1 day"),
    (None, "≥ 1 day"),
)


def _histogram(durations: list[float]) -> list[dict[str, Any]]:
    """How many of the sorted `durations` fall in each DURATION_BINS bin."""
    bins, below = [], 0
    for limit, label in DURATION_BINS:
        upto = bisect_left(durations, limit) if limit is not None else len(durations)
        bins.append({"label": label, "upper_seconds": limit, "count": upto - below})
        below = upto
    return bins


def recent_finished(tx: Tx, spec: StatsSpec, limit: int) -> list[dict[str, Any]]:
    """The newest sessions (by start) that are no longer active, matching the filters."""
    param = Params()
    where = spec.where(param)
    rows = tx.all(
        f"SELECT {RECORD_COLUMNS} FROM sessions WHERE status <> 'active'{where} "
        f"ORDER BY started_us DESC, session_id DESC LIMIT {param(limit)}",
        param.values,
    )
    return with_usage(tx, rows)


def costliest(tx: Tx, spec: StatsSpec, limit: int) -> list[dict[str, Any]]:
    """The sessions matching the spec with the highest reported cost, highest first."""
    param = Params()
    where = spec.where(param)
    columns = ", ".join(f"sessions.{column.strip()}" for column in RECORD_COLUMNS.split(","))
    rows = tx.all(
        f"SELECT {columns} FROM {_USAGE_FIRST} AND u.cost_usd > 0{where} "
        f"ORDER BY u.cost_usd DESC, sessions.session_id LIMIT {param(limit)}",
        param.values,
    )
    return with_usage(tx, rows)


def _nth_duration(tx: Tx, spec: StatsSpec, group: Group, offset: int) -> float | None:
    """The duration at `offset` in the group's cleanly ended sessions, by the (key,
    status, duration) index."""
    param = Params()
    where = spec.where(param)
    in_group = "".join(
        f" AND {expression} = {param(value)}"
        for expression, value in zip(spec.groups(), group, strict=True)
        if expression is not None
    )
    row = tx.one(
        f"SELECT duration_seconds FROM sessions WHERE status = 'ended' AND status <> 'active'"
        f"{where}{in_group} ORDER BY duration_seconds LIMIT 1 OFFSET {param(offset)}",
        param.values,
    )
    return float(row["duration_seconds"]) if row else None


def _group_stats(
    group: Group,
    counts: dict[str, Any],
    percentile: Percentile | None,
    used: dict[str, Any] | None = None,
) -> dict[str, Any]:
    active, ended, crashed, abandoned = (
        int(counts.get(state, 0)) for state in ("active", "ended", "crashed", "abandoned")
    )
    finished = ended + crashed + abandoned
    key, bucket = group
    return stats_group(
        key=key,
        bucket=format_micros(int(bucket)) if bucket is not None else None,
        total=active + finished,
        active=active,
        ended=ended,
        crashed=crashed,
        abandoned=abandoned,
        duration_mean=counts.get("seconds", 0.0) / ended if ended else None,
        duration_p50=percentile(50) if percentile and ended else None,
        duration_p95=percentile(95) if percentile and ended else None,
        crash_rate=crashed / finished if finished else None,
        abandon_rate=abandoned / finished if finished else None,
        **(used or {}),
    )
