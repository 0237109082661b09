"""What a session used, as its agent reports it through OpenTelemetry: API requests,
tokens by kind, cost, API errors, tool calls and failures, prompts and active time.

Records name their session by the client's own session id (Claude Code's `session.id`,
our `external_id`). They are kept as running sums per session, with counts by model, by
tool and by error beside them (at most NAMES_PER_KIND names of each kind per session, the
rest counted as OTHER). Records of a client session whose start has not arrived yet are
summed under that client id (`session_id` NULL) and handed to the session when it starts.
Nothing here decodes OpenTelemetry: `app/otlp.py` turns requests into `Usage`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

TYPE_CHECKING = False  # transitions (on the Claude Code hook's path) import this module
if TYPE_CHECKING:
    from session_buddy.core.store.base import Row, Tx

COUNTERS = (
    *("api_requests", "input_tokens", "output_tokens", "cache_read_tokens"),
    *("cache_creation_tokens", "cost_usd", "api_ms", "api_errors", "tool_calls"),
    *("tool_failures", "prompts", "active_seconds"),
)
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")
DETAIL_KINDS = ("model", "tool", "error")
NAME_MAX = 100
NAMES_PER_KIND = 50
OTHER = "(other)"
# A record up to this long before a session's start is still that session's (the
# agent's clock and the hook's stamp are read a moment apart).
START_SLACK_US = 5_000_000


class Usage:
    """Sums of one client session's records, with the time of its first and last."""

    __slots__ = ("counts", "details", "first_us", "last_us")

    def __init__(self) -> None:
        self.counts: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        # (kind, name) -> [count, failures, cost_usd]
        self.details: dict[tuple[str, str], list[float]] = {}
        self.first_us: int | None = None
        self.last_us: int | None = None

    def seen(self, time_us: int) -> None:
        self.first_us = time_us if self.first_us is None else min(self.first_us, time_us)
        self.last_us = time_us if self.last_us is None else max(self.last_us, time_us)

    def add(self, counter: str, amount: float) -> None:
        self.counts[counter] += amount

    def detail(self, kind: str, name: str, *, failed: bool = False, cost: float = 0.0) -> None:
        sums = self.details.setdefault((kind, name[:NAME_MAX] or "-"), [0, 0, 0.0])
        sums[0] += 1
        sums[1] += int(failed)
        sums[2] += cost


class Growth(NamedTuple):
    """A point of a cumulative series (a total since the series started): what counts
    is how much it grew since the last point."""

    external_key: str
    series: str  # the series' identity: its client id, metric, attributes and start
    counter: str
    value: float
    time_us: int


class _Owner:
    """Where a Usage goes: a session's rows, or the rows of a client id not started yet."""

    def __init__(self, session_id: str | None, external_key: str) -> None:
        self.session_id = session_id
        self.external_key = external_key
        if session_id is not None:
            self.where, self.key = "session_id = $1", session_id
            self.column, self.conflict = "session_id", "WHERE session_id IS NOT NULL"
        else:
            self.where, self.key = "session_id IS NULL AND external_key = $1", external_key
            self.column, self.conflict = "external_key", "WHERE session_id IS NULL"


_SUMMED = ", ".join(f"{name} = session_usage.{name} + excluded.{name}" for name in COUNTERS)
_PLACES = ", ".join(f"${n}" for n in range(3, len(COUNTERS) + 5))
_UPSERT_USAGE = (
    f"INSERT INTO session_usage (session_id, external_key, {', '.join(COUNTERS)}, first_us, "
    f"last_us) VALUES ($1, $2, {_PLACES}) ON CONFLICT ({{key}}) {{conflict}} DO UPDATE SET "
    f"{_SUMMED}, "
    "first_us = CASE WHEN excluded.first_us < session_usage.first_us "
    "THEN excluded.first_us ELSE session_usage.first_us END, "
    "last_us = CASE WHEN excluded.last_us > session_usage.last_us "
    "THEN excluded.last_us ELSE session_usage.last_us END"
)
_UPSERT_DETAIL = (
    "INSERT INTO usage_details (session_id, external_key, kind, name, count, failures, "
    "cost_usd) VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT ({key}, kind, name) {conflict} DO UPDATE SET "
    "count = usage_details.count + excluded.count, "
    "failures = usage_details.failures + excluded.failures, "
    "cost_usd = usage_details.cost_usd + excluded.cost_usd"
)


def _one_at_a_time(tx: Tx, external_key: str) -> None:
    """On PostgreSQL, a start and the records of its client id take turns, so records
    kept for a start never miss it (SQLite has one writer)."""
    if tx.dialect == "postgresql":
        tx.one("SELECT pg_advisory_xact_lock(hashtext($1)) AS locked", (external_key,))


def record(tx: Tx, external_key: str, usage: Usage) -> str | None:
    """Add `usage` to the session of client id `external_key` that had started by the
    records' time (else its first); the session's id, or None when no session of that
    id has started yet and the usage waits for it."""
    if usage.first_us is None or usage.last_us is None:
        return None
    _one_at_a_time(tx, external_key)
    sessions = tx.all(
        "SELECT session_id, started_us FROM sessions WHERE external_id = $1 "
        "ORDER BY started_us, session_id",
        (external_key,),
    )
    started = [row for row in sessions if row["started_us"] <= usage.last_us + START_SLACK_US]
    chosen = started[-1] if started else sessions[0] if sessions else None
    session_id = str(chosen["session_id"]) if chosen is not None else None
    owner = _Owner(session_id, external_key)
    counts = [usage.counts[name] for name in COUNTERS]
    tx.run(
        _UPSERT_USAGE.format(key=owner.column, conflict=owner.conflict),
        (session_id, external_key, *counts, usage.first_us, usage.last_us),
    )
    _add_details(tx, owner, usage)
    return session_id


def _add_details(tx: Tx, owner: _Owner, usage: Usage) -> None:
    known: dict[str, set[str]] = {kind: set() for kind in DETAIL_KINDS}
    for row in tx.all(f"SELECT kind, name FROM usage_details WHERE {owner.where}", (owner.key,)):
        known.setdefault(str(row["kind"]), set()).add(str(row["name"]))
    merged: dict[tuple[str, str], list[float]] = {}
    for (kind, name), sums in usage.details.items():
        names = known.setdefault(kind, set())
        if name not in names and len(names) >= NAMES_PER_KIND:
            name = OTHER
        names.add(name)
        into = merged.setdefault((kind, name), [0, 0, 0.0])
        for index, value in enumerate(sums):
            into[index] += value
    upsert = _UPSERT_DETAIL.format(key=owner.column, conflict=owner.conflict)
    for (kind, name), (count, failures, cost) in merged.items():
        tx.run(upsert, (owner.session_id, owner.external_key, kind, name, count, failures, cost))


def attach_waiting(tx: Tx, session_id: str, external_key: str) -> None:
    """Hand a new session the usage its client id gathered before it started."""
    _one_at_a_time(tx, external_key)
    for table in ("session_usage", "usage_details"):
        tx.run(
            f"UPDATE {table} SET session_id = $1 WHERE session_id IS NULL AND external_key = $2",
            (session_id, external_key),
        )


def forget(tx: Tx, session_id: str) -> None:
    """Delete a pruned session's usage."""
    for table in ("session_usage", "usage_details"):
        tx.run(f"DELETE FROM {table} WHERE session_id = $1", (session_id,))


def forget_waiting(tx: Tx, cutoff_us: int) -> int:
    """Delete usage that waited since before `cutoff_us` for a session that never came,
    and cumulative series last updated then; how many rows went."""
    keys = [
        str(row["external_key"])
        for row in tx.all(
            "SELECT external_key FROM session_usage WHERE session_id IS NULL AND last_us < $1",
            (cutoff_us,),
        )
    ]
    for key in keys:
        for table in ("session_usage", "usage_details"):
            tx.run(f"DELETE FROM {table} WHERE session_id IS NULL AND external_key = $1", (key,))
    return len(keys) + tx.run("DELETE FROM usage_series WHERE updated_us < $1", (cutoff_us,))


def record_all(
    tx: Tx, usages: dict[str, Usage], growths: list[Growth], now_us: int
) -> dict[str, str | None]:
    """Record each client id's usage, and how much its cumulative series grew; the
    session each client id's usage went to (None: waiting for its start)."""
    grown: dict[str, Usage] = {}
    for point in growths:
        amount = _increase(tx, point.series, point.value, now_us)
        sums = grown.setdefault(point.external_key, Usage())
        sums.add(point.counter, amount)
        sums.seen(point.time_us)
    went = {key: record(tx, key, sums) for key, sums in usages.items()}
    return went | {key: record(tx, key, sums) for key, sums in grown.items()}


def _increase(tx: Tx, series: str, value: float, now_us: int) -> float:
    """How much a cumulative series grew since it was last seen (all of `value` the
    first time, or after it was reset)."""
    row = tx.one(f"SELECT value FROM usage_series WHERE series = $1{tx.lock_rows}", (series,))
    tx.run(
        "INSERT INTO usage_series (series, value, updated_us) VALUES ($1, $2, $3) "
        "ON CONFLICT (series) DO UPDATE SET value = excluded.value, "
        "updated_us = excluded.updated_us",
        (series, value, now_us),
    )
    before = float(row["value"]) if row is not None else 0.0
    return value - before if value >= before else value


def _summary(row: Row) -> dict[str, Any]:
    sums: dict[str, Any] = {name: row[name] for name in COUNTERS}
    sums["tokens"] = sum(int(row[name]) for name in TOKEN_KINDS)
    return sums


_SUMMARY_COLUMNS = ", ".join(COUNTERS)


def summaries(tx: Tx, session_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The usage sums of each of these sessions that has any."""
    if not session_ids:
        return {}
    places = ", ".join(f"${n}" for n in range(1, len(session_ids) + 1))
    rows = tx.all(
        f"SELECT session_id, {_SUMMARY_COLUMNS} FROM session_usage WHERE session_id IN ({places})",
        session_ids,
    )
    return {str(row["session_id"]): _summary(row) for row in rows}


def of_session(tx: Tx, session_id: str) -> dict[str, Any] | None:
    """A session's usage sums with its counts by model, tool and error; None without."""
    found = summaries(tx, [session_id]).get(session_id)
    if found is None:
        return None
    rows = tx.all(
        "SELECT kind, name, count, failures, cost_usd FROM usage_details "
        "WHERE session_id = $1 ORDER BY kind, count DESC, name",
        (session_id,),
    )
    by_kind: dict[str, list[dict[str, Any]]] = {"models": [], "tools": [], "errors": []}
    for row in rows:
        name, count = row["name"], int(row["count"])
        if row["kind"] == "model":
            entry = {"model": name, "requests": count, "cost_usd": float(row["cost_usd"])}
            by_kind["models"].append(entry)
        elif row["kind"] == "tool":
            by_kind["tools"].append(
                {"tool": name, "calls": count, "failures": int(row["failures"])}
            )
        elif row["kind"] == "error":
            by_kind["errors"].append({"error": name, "count": count})
    return found | by_kind
