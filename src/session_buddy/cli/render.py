"""Sessions for people: local times with relative ages, human durations, states in
colour, and tables that fit the terminal without cutting a session id."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from session_buddy.amounts import count, money
from session_buddy.timestamps import human_age, human_duration, parse_timestamp, session_duration

if TYPE_CHECKING:
    from rich.table import Table

STATE_STYLES = {"active": "green", "ended": "blue", "crashed": "bold red", "abandoned": "yellow"}


def when(iso: str | None, now: datetime | None = None) -> str:
    """A stored UTC time in local time, with its age: `14:03 (3 min ago)`, or with the
    date when it is not today."""
    if not iso:
        return "-"
    now = now or datetime.now(UTC)
    instant = parse_timestamp(iso)
    local, local_now = instant.astimezone(), now.astimezone()
    shown = local.strftime("%H:%M" if local.date() == local_now.date() else "%Y-%m-%d %H:%M")
    return f"{shown} ({human_age(instant, now)})"


def state(record: dict[str, Any]) -> str:
    """The state in its colour (rich markup), with an active session's activity (and a
    failure's reason even once it ended: `ended (failing: rate_limit)`)."""
    status, activity = str(record["status"]), record.get("activity")
    text = f"[{STATE_STYLES.get(status, 'default')}]{status}[/]"
    if activity and (status == "active" or activity == "failing"):
        detail = record.get("activity_detail")
        text += f" ({activity}: {detail})" if detail else f" ({activity})"
    return text


def took(record: dict[str, Any], now: datetime | None = None, *, whole: bool = True) -> str:
    """How long a session took, or for an active one how long it has run so far; an
    abandoned one's as far as it is known (`≥ 12m 03s`). `whole`: say so in words
    (`running ...`, `..., last seen 14:03 (12 min ago)`)."""
    now = now or datetime.now(UTC)
    if record["status"] == "active":
        ran = human_duration((now - parse_timestamp(record["started_at"])).total_seconds())
        return f"running {ran}" if whole else ran
    shown = session_duration(record["status"], record.get("duration_seconds"))
    if whole and record["status"] == "abandoned":
        shown += f", last seen {when(record.get('last_seen_at'), now)}"
    return shown


# Column sets from the fullest to the barest: the first that fits the terminal is shown,
# so the less useful columns go first and a session id is never cut.
LAYOUTS = (
    ("session id", "state", "shell", "host", "user", "pid", "cwd", "started", "took"),
    ("session id", "state", "shell", "host", "user", "pid", "project", "started", "took"),
    ("session id", "state", "host", "project", "started", "took"),
    ("session id", "state", "project", "age", "took"),
    ("session id", "state", "age", "took"),
    ("session id", "state", "age"),
)
_PLAIN_STATE = re.compile(r"\[/?[^\]]*\]")


def _cells(record: dict[str, Any], now: datetime) -> dict[str, str]:
    used = record.get("usage") or {}
    return {
        "cost": money(used.get("cost_usd")),
        "tokens": count(used.get("tokens")),
        "session id": record["session_id"],
        "state": state(record),
        "shell": record["shell_type"],
        "host": record["hostname"],
        "user": record["username"],
        "pid": "-" if record["pid"] is None else str(record["pid"]),
        "cwd": record["cwd"],
        "project": record["cwd"].rstrip("/").rsplit("/", 1)[-1] or "/",
        "started": when(record["started_at"], now),
        "age": human_age(parse_timestamp(record["started_at"]), now),
        "took": took(record, now, whole=False),
    }


def _width(text: str) -> int:
    return len(_PLAIN_STATE.sub("", text))


def sessions_table(sessions: list[dict[str, Any]], width: int) -> Table:
    """The fullest layout whose columns fit in `width`, each cell on one line; with cost
    and tokens when any of the sessions reported usage."""
    now = datetime.now(UTC)
    rows = [_cells(record, now) for record in sessions]
    layouts: tuple[tuple[str, ...], ...] = LAYOUTS
    if any(record.get("usage") for record in sessions):
        layouts = tuple((*layout[:2], "cost", "tokens", *layout[2:]) for layout in LAYOUTS)
        layouts += tuple((*layout[:2], "cost", *layout[2:]) for layout in LAYOUTS[-3:])
    return fitted_table(rows, layouts, width, right=("pid", "took", "cost", "tokens"))


def fitted_table(
    rows: list[dict[str, str]],
    layouts: tuple[tuple[str, ...], ...],
    width: int,
    right: tuple[str, ...] = (),
) -> Table:
    """A table of `rows` (cells by column name) in the first of `layouts` (fullest
    first) whose columns fit in `width`, every cell whole on one line."""
    from rich.table import Table

    def needed(layout: tuple[str, ...]) -> int:
        widest = [max(len(name), *(_width(row[name]) for row in rows)) for name in layout]
        return sum(widest) + len(layout) - 1  # one space between collapsed columns

    layout = next((cols for cols in layouts if needed(cols) <= width), layouts[-1])
    table = Table(box=None, pad_edge=False, collapse_padding=True)
    for name in layout:
        table.add_column(name, no_wrap=True, justify="right" if name in right else "left")
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
