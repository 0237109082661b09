"""Read side: session records, filtered pages with cursors, and grouped statistics."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from session_buddy.core.states import SessionStatus
from session_buddy.core.store.base import Row, Tx
from session_buddy.core.timestamps import format_micros

MAX_PAGE = 500
DEFAULT_PAGE = 50
GROUP_KEYS = ("component_name", "shell_type", "hostname", "username")
FILTER_COLUMNS = ("status", "component_name", "shell_type", "hostname", "username", "external_id")
_COLUMNS = (
    "session_id, event_id, component_name, shell_type, pid, hostname, username, cwd, "
    "python_version, platform, status, started_us, ended_us, last_seen_us, "
    "duration_seconds, end_reason, exit_code, start_metadata, end_metadata, external_id, "
    "previous_session_id"
)


def to_record(row: Row) -> dict[str, Any]:
    """A stored row as the JSON-ready session record of DESIGN §3."""
    return {
        "session_id": row["session_id"],
        "event_id": row["event_id"],
        "component_name": row["component_name"],
        "shell_type": row["shell_type"],
        "pid": row["pid"],
        "hostname": row["hostname"],
        "username": row["username"],
        "cwd": row["cwd"],
        "python_version": row["python_version"],
        "platform": row["platform"],
        "status": row["status"],
        "started_at": format_micros(row["started_us"]),
        "ended_at": format_micros(row["ended_us"]),
        "last_seen_at": format_micros(row["last_seen_us"]),
        "duration_seconds": row["duration_seconds"],
        "end_reason": row["end_reason"],
        "exit_code": row["exit_code"],
        "start_metadata": json.loads(row["start_metadata"]),
        "end_metadata": json.loads(row["end_metadata"]) if row["end_metadata"] else None,
        "external_id": row["external_id"],
        "previous_session_id": row["previous_session_id"],
    }


def fetch_session(tx: Tx, session_id: str) -> dict[str, Any] | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,))
    return to_record(row) if row else None


def count_active(tx: Tx) -> int:
    row = tx.one("SELECT COUNT(*) AS n FROM sessions WHERE status = 'active'")
    return int(row["n"]) if row else 0


@dataclass(frozen=True)
class SessionFilter:
    """Validated list_sessions arguments; times are UTC microseconds."""

    equals: dict[str, str]
    started_after_us: int | None
    started_before_us: int | None
    limit: int
    cursor: tuple[int, str] | None


def encode_cursor(started_us: int, session_id: str) -> str:
    raw = json.dumps([started_us, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_us, session_id = json.loads(raw)
        if not isinstance(started_us, int) or not isinstance(session_id, str):
            raise ValueError
        return started_us, session_id
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(
            f"Invalid cursor {cursor!r}: pass next_cursor from a previous page"
        ) from exc


def check_status_filter(status: str) -> str:
    if status not in {s.value for s in SessionStatus}:
        states = ", ".join(s.value for s in SessionStatus)
        raise ValueError(f"Invalid status filter {status!r}: use one of {states}")
    return status


def list_sessions(tx: Tx, spec: SessionFilter) -> dict[str, Any]:
    """One page, newest first, and the cursor of the next page (None at the end)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in spec.equals.items():
        clauses.append(f"{column} = ?")
        params.append(value)
    if spec.started_after_us is not None:
        clauses.append("started_us >= ?")
        params.append(spec.started_after_us)
    if spec.started_before_us is not None:
        clauses.append("started_us < ?")
        params.append(spec.started_before_us)
    if spec.cursor is not None:
        clauses.append("(started_us < ? OR (started_us = ? AND session_id < ?))")
        params.extend((spec.cursor[0], spec.cursor[0], spec.cursor[1]))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM sessions {where} "
        "ORDER BY started_us DESC, session_id DESC LIMIT ?",
        (*params, spec.limit + 1),
    )
    page = rows[: spec.limit]
    next_cursor = None
    if len(rows) > spec.limit:
        last = page[-1]
        next_cursor = encode_cursor(int(last["started_us"]), str(last["session_id"]))
    return {"sessions": [to_record(row) for row in page], "next_cursor": next_cursor}


def session_stats(
    tx: Tx, group_by: str, since_us: int | None, until_us: int | None
) -> list[dict[str, Any]]:
    """Per-group state counts, clean-exit duration mean/p50/p95, crash and abandon rates.

    Percentiles are nearest-rank over sessions that ended cleanly, each read by an offset
    into the group's (status, duration) index. Rates are shares of finished (non-active)
    sessions, None when none finished yet.
    """
    if group_by not in GROUP_KEYS:
        raise ValueError(f"Invalid group_by {group_by!r}: use one of {', '.join(GROUP_KEYS)}")
    window, params = "", []
    if since_us is not None:
        window += " AND started_us >= ?"
        params.append(since_us)
    if until_us is not None:
        window += " AND started_us < ?"
        params.append(until_us)
    rows = tx.all(
        f"SELECT {group_by} AS key, status, COUNT(*) AS n, SUM(duration_seconds) AS seconds "
        f"FROM sessions WHERE 1 = 1{window} GROUP BY {group_by}, status ORDER BY {group_by}",
        params,
    )
    counts: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = counts.setdefault(row["key"], {"seconds": 0.0})
        group[row["status"]] = int(row["n"])
        if row["status"] == SessionStatus.ENDED:
            group["seconds"] = float(row["seconds"] or 0.0)
    return [_group_stats(tx, group_by, key, counts[key], window, params) for key in counts]


def _nth_duration(
    tx: Tx, group_by: str, key: Any, offset: int, window: str, params: list[Any]
) -> float | None:
    row = tx.one(
        f"SELECT duration_seconds FROM sessions WHERE {group_by} = ? AND status = 'ended'"
        f"{window} ORDER BY duration_seconds LIMIT 1 OFFSET ?",
        (key, *params, offset),
    )
    return float(row["duration_seconds"]) if row else None


def _group_stats(
    tx: Tx, group_by: str, key: Any, counts: dict[str, Any], window: str, params: list[Any]
) -> dict[str, Any]:
    active, ended, crashed, abandoned = (
        int(counts.get(state, 0)) for state in ("active", "ended", "crashed", "abandoned")
    )
    finished = ended + crashed + abandoned

    def percentile(p: int) -> float | None:
        rank = (ended * p + 99) // 100  # nearest rank: ceil(p% of n)
        return _nth_duration(tx, group_by, key, rank - 1, window, params) if ended else None

    return {
        "key": key,
        "total": active + finished,
        "active": active,
        "ended": ended,
        "crashed": crashed,
        "abandoned": abandoned,
        "duration_mean": counts["seconds"] / ended if ended else None,
        "duration_p50": percentile(50),
        "duration_p95": percentile(95),
        "crash_rate": crashed / finished if finished else None,
        "abandon_rate": abandoned / finished if finished else None,
    }
