"""`session-buddy watch`: what needs someone (first), what runs, and what ended badly,
refreshed in place, for people who live in tmux."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from session_buddy.cli import render
from session_buddy.cli.app import Target, console, main, read_tool, transport_options
from session_buddy.timestamps import human_duration, parse_timestamp

if TYPE_CHECKING:
    from rich.console import Group

NEEDS_YOU = ("waiting_for_input", "failing")
RECENT = timedelta(hours=24)  # what ended badly, this far back
SHOWN_BADLY = 10


def needs_you(record: dict[str, Any]) -> bool:
    return record["status"] == "active" and record.get("activity") in NEEDS_YOU


def _since(record: dict[str, Any], now: datetime) -> float:
    """Seconds since the session's activity began (else since it started)."""
    then = record.get("activity_at") or record["started_at"]
    return (now - parse_timestamp(then)).total_seconds()


def snapshot(target: Target) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The active sessions, and those that crashed or were abandoned in the last day."""
    active = read_tool(target, "list_sessions", {"status": "active", "limit": 500})["sessions"]
    since = (datetime.now(UTC) - RECENT).isoformat()
    badly = [
        record
        for status in ("crashed", "abandoned")
        for record in read_tool(
            target,
            "list_sessions",
            {"status": status, "started_after": since, "limit": SHOWN_BADLY},
        )["sessions"]
    ]
    badly.sort(key=lambda record: record.get("ended_at") or "", reverse=True)
    return active, badly[:SHOWN_BADLY]


def frame(active: list[dict[str, Any]], badly: list[dict[str, Any]], height: int) -> Group:
    """One screen: a headline, then the sessions that need someone (longest waiting
    first), then the rest that run (newest first), then what ended badly."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = datetime.now(UTC)
    waiting = sorted(filter(needs_you, active), key=lambda record: -_since(record, now))
    running = [record for record in active if not needs_you(record)]
    headline = Text.from_markup(
        f"[bold]{len(waiting)} need you[/] · {len(running)} running · "
        f"{len(badly)} ended badly in the last day · {now.astimezone():%H:%M:%S}"
    )

    def table(title: str, rows: list[dict[str, Any]], how_long: str) -> Table:
        shown = Table(title=title, title_justify="left", box=None, pad_edge=False, expand=False)
        for column in ("session id", "state", how_long, "where"):
            shown.add_column(column, no_wrap=True, overflow="ellipsis")
        for record in rows:
            if how_long == "ended":
                long = render.when(record.get("ended_at"), now)
            else:
                long = human_duration(_since(record, now))
            where = f"{record['hostname']}:{record['cwd']}"
            state = render.state(record)
            if record["status"] != "active" and record.get("end_reason"):
                state += f" {record['end_reason']}"
            shown.add_row(record["session_id"], state, long, where)
        return shown

    room = max(3, (height - 10) // 3)
    parts: list[Any] = [headline]
    if waiting:
        parts.append(table("[bold red]needs you[/]", waiting[: room * 2], "for"))
    parts.append(table("running", running[:room], "for"))
    if badly:
        parts.append(table("ended badly", badly[:room], "ended"))
    return Group(*parts)


@main.command("watch")
@click.option("--interval", type=click.FloatRange(0.2), default=2.0, show_default=True)
@click.option("--once", is_flag=True, help="Print one screen and exit.")
@transport_options(timeout=10.0)
def watch_command(interval: float, once: bool, target: Target) -> None:
    """A live view: what waits for you, what runs, what crashed (Ctrl+C stops)."""
    out = console()
    if once:
        out.print(frame(*snapshot(target), out.height))
        return
    from rich.live import Live
    from rich.text import Text

    with Live(console=out, auto_refresh=False, screen=False, transient=False) as live:
        try:
            while True:
                try:
                    shown: Any = frame(*snapshot(target), out.height)
                except click.ClickException as exc:  # the store or server is away: say so
                    shown = Text(f"{exc.message} (trying again every {interval:g} s)")
                live.update(shown, refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
