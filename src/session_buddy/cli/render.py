"""Sessions for people: local times with relative ages, human durations, states in
colour, and tables that fit the terminal without cutting a session id."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from session_buddy.timestamps import parse_timestamp

if TYPE_CHECKING:
    from rich.table import Table

STATE_STYLES = {"active": "green", "ended": "blue", "crashed": "bold red", "abandoned": "yellow"}


def duration(seconds: float | None) -> str:
    """`42s`, `5m 03s`, `1h 10m`, `3d 4h`; `-` for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def age(then: datetime, now: datetime) -> str:
    """How long ago, in words: `just now`, `3 min ago`, `2 h ago`, `6 days ago`."""
    seconds = (now - then).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days > 1 else ''} ago"


def when(iso: str | None, now: datetime | None = None) -> str:
    """A stored UTC time in local time, with its age: `14:03 (3 min ago)`, or with the
    date when it is not today."""
    if not iso:
        return "-"
    now = now or datetime.now(UTC)
    instant = parse_timestamp(iso)
    local, local_now = instant.astimezone(), now.astimezone()
    shown = local.strftime("%H:%M" if local.date() == local_now.date() else "%Y-%m-%d %H:%M")
    return f"{shown} ({age(instant, now)})"


def state(record: dict[str, Any]) -> str:
    """The state in its colour (rich markup), with an active session's activity."""
    status = str(record["status"])
    text = f"[{STATE_STYLES.get(status, 'default')}]{status}[/]"
    if status == "active" and record.get("activity"):
        text += f" ({record['activity']})"
    return text


def took(record: dict[str, Any], now: datetime | None = None, *, say_running: bool = True) -> str:
    """How long a session took, or for an active one how long it has run so far."""
    if record["status"] == "active":
        now = now or datetime.now(UTC)
        ran = duration((now - parse_timestamp(record["started_at"])).total_seconds())
        return f"running {ran}" if say_running else ran
    return duration(record.get("duration_seconds"))


# Column sets from the fullest to the barest: the first that fits the terminal is shown,
# so the less useful columns go first and a session id is never cut.
LAYOUTS = (
    ("session id", "state", "shell", "host", "user", "pid", "started", "took"),
    ("session id", "state", "host", "started", "took"),
    ("session id", "state", "host", "age", "took"),
    ("session id", "state", "age", "took"),
    ("session id", "state", "age"),
)
_PLAIN_STATE = re.compile(r"\[/?[^\]]*\]")


def _cells(record: dict[str, Any], now: datetime) -> dict[str, str]:
    return {
        "session id": record["session_id"],
        "state": state(record),
        "shell": record["shell_type"],
        "host": record["hostname"],
        "user": record["username"],
        "pid": "-" if record["pid"] is None else str(record["pid"]),
        "started": when(record["started_at"], now),
        "age": age(parse_timestamp(record["started_at"]), now),
        "took": took(record, now, say_running=False),
    }


def _width(text: str) -> int:
    return len(_PLAIN_STATE.sub("", text))


def sessions_table(sessions: list[dict[str, Any]], width: int) -> Table:
    """The fullest layout whose columns fit in `width`, each cell on one line."""
    from rich.table import Table

    now = datetime.now(UTC)
    rows = [_cells(record, now) for record in sessions]

    def needed(layout: tuple[str, ...]) -> int:
        widest = [max(len(name), *(_width(row[name]) for row in rows)) for name in layout]
        return sum(widest) + len(layout) - 1  # one space between collapsed columns

    layout = next((cols for cols in LAYOUTS if needed(cols) <= width), LAYOUTS[-1])
    table = Table(box=None, pad_edge=False, collapse_padding=True)
    for name in layout:
        right = name in ("pid", "took")
        table.add_column(name, no_wrap=True, justify="right" if right else "left")
    for row in rows:
        table.add_row(*(row[name] for name in layout))
    return table


def bucket(iso: str | None, size: str) -> str:
    """A time bucket's start, in UTC as stats count them: `2026-11-26 14:00` for an
    hour, `2026-11-26` for a day, `week of 2026-11-23` for a week."""
    if not iso:
        return "-"
    start = parse_timestamp(iso)
    if size == "hour":
        return start.strftime("%Y-%m-%d %H:00")
    return ("week of " if size == "week" else "") + start.strftime("%Y-%m-%d")
