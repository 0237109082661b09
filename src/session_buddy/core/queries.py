"""Read side: session records, filtered pages with cursors, and grouped statistics."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from session_buddy.core.errors import InvalidArgument
from session_buddy.core.records import (
    GROUP_KEYS,
    RECORD_COLUMNS,
    stats_group,
    to_record,
)
from session_buddy.core.states import SessionStatus
from session_buddy.core.store.base import Tx

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
    row = tx.one(f"SELECT {RECORD_COLUMNS} FROM sessions WHERE session_id = $1", (session_id,))
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


def _window(param: Params, since_us: int | None, until_us: int | None) -> list[str]:
    clauses = []
    if since_us is not None:
        clauses.append(f"started_us >= {param(since_us)}")
    if until_us is not None:
        clauses.append(f"started_us < {param(until_us)}")
    return clauses


def list_sessions(tx: Tx, spec: SessionFilter) -> dict[str, Any]:
    """One page, newest first, and the cursor of the next page (None at the end)."""
    param = Params()
    clauses = [f"{column} = {param(value)}" for column, value in spec.equals.items()]
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
    return {"sessions": [to_record(row) for row in page], "next_cursor": next_cursor}


def check_group_by(group_by: str) -> str:
    if group_by not in GROUP_KEYS:
        raise InvalidArgument(
            "group_by", f"Invalid group_by {group_by!r}: use one of {', '.join(GROUP_KEYS)}"
        )
    return group_by


def session_stats(
    tx: Tx, group_by: str, since_us: int | None, until_us: int | None
) -> list[dict[str, Any]]:
    """Per-group state counts, clean-exit duration mean/p50/p95, crash and abandon rates.

    Percentiles are nearest-rank over sessions that ended cleanly, each read by an offset
    into the group's (status, duration) index.
    """
    check_group_by(group_by)
    param = Params()
    window = "".join(f" AND {clause}" for clause in _window(param, since_us, until_us))
    rows = tx.all(
        f"SELECT {group_by} AS key, status, COUNT(*) AS n, SUM(duration_seconds) AS seconds "
        f"FROM sessions WHERE 1 = 1{window} GROUP BY {group_by}, status ORDER BY {group_by}",
        param.values,
    )
    counts: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = counts.setdefault(row["key"], {"seconds": 0.0})
        group[row["status"]] = int(row["n"])
        if row["status"] == SessionStatus.ENDED:
            group["seconds"] = float(row["seconds"] or 0.0)
    return [_group_stats(tx, group_by, key, counts[key], window, param.values) for key in counts]


def _nth_duration(
    tx: Tx, group_by: str, key: Any, offset: int, window: str, params: list[Any]
) -> float | None:
    """The duration at `offset` among the group's cleanly ended sessions; the window's
    parameters come first, then the group key and the offset."""
    n = len(params)
    row = tx.one(
        f"SELECT duration_seconds FROM sessions WHERE {group_by} = ${n + 1} "
        f"AND status = 'ended'{window} ORDER BY duration_seconds LIMIT 1 OFFSET ${n + 2}",
        (*params, key, offset),
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

    return stats_group(
        key=key,
        total=active + finished,
        active=active,
        ended=ended,
        crashed=crashed,
        abandoned=abandoned,
        duration_mean=counts["seconds"] / ended if ended else None,
        duration_p50=percentile(50),
        duration_p95=percentile(95),
        crash_rate=crashed / finished if finished else None,
        abandon_rate=abandoned / finished if finished else None,
    )
