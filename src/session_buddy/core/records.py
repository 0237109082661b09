"""What a stored session looks like from the outside: the record and the stats group.

Each field is named once, here. The store keeps times as `<name>_us` integers (UTC
microseconds) and metadata as JSON text; `to_record` and `RECORD_COLUMNS` follow from
the field names by that rule. NamedTuples, not dataclasses: the Claude Code hook imports
this module, and `dataclasses` alone costs it more than its store write.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, get_type_hints

from session_buddy.timestamps import format_micros

GROUP_KEYS = ("component_name", "shell_type", "hostname", "username", "cwd")
# Time buckets of session_stats, by length in microseconds (weeks start on Monday, UTC).
BUCKETS = {"hour": 3_600_000_000, "day": 86_400_000_000, "week": 604_800_000_000}
FILTER_COLUMNS = (
    *("status", "component_name", "shell_type", "hostname", "username"),
    *("external_id", "activity"),
)


class SessionOrigin(NamedTuple):
    """What a start says about where a session runs: stored as given, returned as is."""

    event_id: str
    component_name: str
    shell_type: str
    pid: int | None  # None: the client could not tell which process runs the session
    hostname: str
    username: str
    cwd: str
    python_version: str
    platform: str


class SessionState(NamedTuple):
    """What the store says of a session: with its origin, the record that get_session and
    list_sessions return (DESIGN §3)."""

    session_id: str
    status: str
    started_at: str | None
    ended_at: str | None
    last_seen_at: str | None
    duration_seconds: float | None
    end_reason: str | None
    exit_code: int | None
    start_metadata: dict[str, Any] | None
    end_metadata: dict[str, Any] | None
    external_id: str | None
    previous_session_id: str | None
    parent_session_id: str | None
    activity: str | None  # working, waiting_for_input, idle or failing, when a client says
    activity_at: str | None
    activity_detail: str | None  # a word on the activity: why it fails (e.g. rate_limit)
    owner: str | None  # the subject of the token that started it, when one did


class StatsGroup(NamedTuple):
    """One group of session_stats. Durations are of cleanly ended sessions; rates are
    shares of finished (non-active) sessions, None while none finished."""

    key: str | None
    total: int
    active: int
    ended: int
    crashed: int
    abandoned: int
    duration_mean: float | None
    duration_p50: float | None
    duration_p95: float | None
    crash_rate: float | None
    abandon_rate: float | None
    bucket: str | None = None  # start of the hour/day/week (UTC) when bucketed by time
    # What the group's sessions used, as their agents report it (None: nothing reported).
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None


GROUP_USAGE = (
    *("cost_usd", "input_tokens", "output_tokens", "cache_read_tokens"),
    "cache_creation_tokens",
)


def _column(name: str) -> str:
    return name.removesuffix("_at") + "_us" if name.endswith("_at") else name


def _value(name: str, stored: Any) -> Any:
    if name.endswith("_at"):
        return format_micros(stored)
    if name.endswith("_metadata"):
        return json.loads(stored) if stored else None
    return stored


# The record's fields, as exports list them; to_record puts session_id first (it names
# the record).
RECORD_FIELDS = (*SessionOrigin._fields, *SessionState._fields)
# A record's fields in the order every face gives them (JSON, CSV): its id first.
RECORD_ORDER = ("session_id", *(name for name in RECORD_FIELDS if name != "session_id"))
RECORD_COLUMNS = ", ".join(_column(name) for name in RECORD_ORDER)


def to_record(row: Any) -> dict[str, Any]:
    """A row selected with RECORD_COLUMNS as the JSON-ready session record."""
    return {name: _value(name, row[_column(name)]) for name in RECORD_ORDER}


def stats_group(**values: Any) -> dict[str, Any]:
    """A stats group as JSON, checked against the StatsGroup fields (`bucket` only when
    stats are bucketed by time, cost and tokens only when some session reported them)."""
    group = StatsGroup(**values)._asdict()
    for name in ("bucket", *GROUP_USAGE):
        if group[name] is None:
            del group[name]
    return group


def record_types() -> dict[str, Any]:
    """Each record field's type, for the MCP tools' output schemas; `usage` is what the
    session used as its agent reports it (core/usage.py), None when nothing."""
    hints = get_type_hints(SessionOrigin) | get_type_hints(SessionState)
    return hints | {"usage": dict[str, Any]}
