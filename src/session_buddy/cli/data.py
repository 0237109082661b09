"""Commands that look at stored sessions (`sessions`, `stats`) and keep the store
(`reap`, `prune`, `db`). Reads go to a server with --server-url, else to the store,
opened read-only."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from session_buddy import amounts
from session_buddy.cli import render
from session_buddy.cli.app import (
    Target,
    console,
    database_url_option,
    json_option,
    main,
    print_json,
    read_tool,
    run_with_service,
    transport_options,
)
from session_buddy.cli.when import Span, When
from session_buddy.config import Settings, without_password
from session_buddy.core.records import BUCKETS, GROUP_KEYS, RECORD_ORDER
from session_buddy.core.states import ACTIVITIES, SessionStatus
from session_buddy.core.usage import COUNTERS, TOKEN_KINDS
from session_buddy.timestamps import format_micros, human_duration, to_micros

F = TypeVar("F", bound=Callable[..., Any])
READ_TIMEOUT = 30.0
PAGE = 500


def filter_options(command: F) -> F:
    """The list_sessions filters, as flags."""
    options = [
        click.option("--status", type=click.Choice([status.value for status in SessionStatus])),
        click.option("--active", is_flag=True, help="Only sessions running now (--status active)."),
        click.option("--component", "component_name"),
        click.option("--shell-type"),
        click.option("--hostname"),
        click.option("--username"),
        click.option("--external-id", help="The client's own session id (e.g. Claude Code's)."),
        click.option(
            "--activity", type=click.Choice(ACTIVITIES), help="What active sessions do now."
        ),
        click.option(
            "--since", "started_after", type=When(), help="Started at or after (e.g. 24h, 7d)."
        ),
        click.option("--until", "started_before", type=When(), help="Started before."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def chosen(active: bool, filters: dict[str, Any]) -> dict[str, Any]:
    """The filters given (as tool arguments)."""
    if active:
        filters["status"] = "active"
    return {name: value for name, value in filters.items() if value is not None}


@main.group()
def sessions() -> None:
    """Look at stored sessions."""


@sessions.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="next_cursor from a previous --json page.")
@json_option
@transport_options(timeout=READ_TIMEOUT)
def list_command(as_json: bool, active: bool, target: Target, **filters: Any) -> None:
    """List sessions, newest first."""
    page = read_tool(target, "list_sessions", chosen(active, filters))
    if as_json:
        print_json(page)
        return
    out = console()
    if not page["sessions"]:
        click.echo("no sessions")
        return
    out.print(render.sessions_table(page["sessions"], out.width))
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@sessions.command("show")
@click.argument("session_id")
@json_option
@transport_options(timeout=READ_TIMEOUT)
def show_command(session_id: str, as_json: bool, target: Target) -> None:
    """Show one session, every field."""
    record = read_tool(target, "get_session", {"session_id": session_id})
    if record["status"] == "not_found":
        if as_json:
            print_json(record)
        click.echo(f"Error: no session {session_id!r}", err=True)
        sys.exit(1)
    if as_json:
        print_json(record)
        return
    from rich.table import Table

    table = Table("field", "value", show_header=False, box=None)
    for field, value in record.items():
        if field == "usage":
            continue
        if field == "status":
            shown = render.state(record)
        elif field.endswith("_at"):
            shown = render.when(value)
        elif field == "duration_seconds":
            shown = render.took(record)
        elif isinstance(value, dict):
            shown = json.dumps(value)
        else:
            shown = "-" if value is None else str(value)
        table.add_row(field, shown)
    for field, shown in amounts.usage_lines(record["usage"]).items() if record["usage"] else ():
        table.add_row(field, shown)
    console().print(table)


@sessions.command("events")
@click.argument("session_id")
@json_option
@transport_options(timeout=READ_TIMEOUT)
def events_command(session_id: str, as_json: bool, target: Target) -> None:
    """A session's event log, oldest first, with each payload as it was received."""
    log = read_tool(target, "list_session_events", {"session_id": session_id})
    if as_json:
        print_json(log["events"])
        return
    if not log["events"]:
        click.echo(f"no events for {session_id!r}")
        return
    for event in log["events"]:
        head = f"{render.when(event['received_at'])}  {event['event_type']}  {event['outcome']}"
        click.echo(head)
        click.echo("  " + json.dumps(event["payload"], sort_keys=True))


# The order of the NDJSON records too, whose `usage` object CSV spreads over its own
# columns (empty for a session without usage).
EXPORT_FIELDS = [*RECORD_ORDER, *COUNTERS]


@sessions.command("export")
@filter_options
@click.option("--format", "form", type=click.Choice(["csv", "ndjson"]), default="ndjson")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default: stdout).")
@transport_options(timeout=READ_TIMEOUT)
def export_command(active: bool, form: str, output: Any, target: Target, **filters: Any) -> None:
    """Every matching session, newest first, streamed page by page (memory stays flat)."""
    writer = csv.DictWriter(output, EXPORT_FIELDS, extrasaction="ignore") if form == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for record in _all_sessions(target, chosen(active, filters)):
        if writer is not None:
            flat = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in record.items()}
            writer.writerow(flat | (record.get("usage") or {}))
        else:
            output.write(json.dumps(record, separators=(",", ":")) + "\n")
        count += 1
    click.echo(f"exported {count} session(s)", err=True)


def _all_sessions(target: Target, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        arguments = filters | {"limit": PAGE} | ({"cursor": cursor} if cursor else {})
        page = read_tool(target, "list_sessions", arguments)
        yield from page["sessions"]
        cursor = page["next_cursor"]
        if not cursor:
            return


@main.command("stats")
@click.option(
    "--by",
    "by",
    multiple=True,
    type=click.Choice([*GROUP_KEYS, *BUCKETS]),
    help="A grouping and/or a time bucket (hour, day, week); repeatable. Default: component_name.",
)
@filter_options
@json_option
@transport_options(timeout=READ_TIMEOUT)
def stats_command(
    by: tuple[str, ...], as_json: bool, active: bool, target: Target, **filters: Any
) -> None:
    """Counts, durations and failure rates per group (and time bucket).

    Durations (mean, p50, p95) are of cleanly ended sessions only; rates are shares of
    finished sessions. Cost and tokens, as agents report them through OpenTelemetry,
    show when any session in view reported them."""
    groups = [key for key in by if key in GROUP_KEYS]
    buckets = [key for key in by if key in BUCKETS]
    if len(groups) > 1 or len(buckets) > 1:
        raise click.UsageError("--by takes at most one grouping and one time bucket")
    arguments = chosen(active, filters)
    arguments["since"] = arguments.pop("started_after", None)
    arguments["until"] = arguments.pop("started_before", None)
    arguments |= {
        "group_by": groups[0] if groups else None,
        "bucket": buckets[0] if buckets else None,
    }
    stats = read_tool(target, "session_stats", {k: v for k, v in arguments.items() if v})
    if as_json:
        print_json(stats)
        return
    leading = [
        name for name in (str(stats.get("bucket") or ""), str(stats.get("group_by") or "")) if name
    ]
    rows = []
    used = any(group.get("cost_usd") is not None for group in stats["groups"])
    for group in stats["groups"]:
        cells = {name: _stat(name, group[field]) for name, field in STAT_COLUMNS.items()}
        cells["cost"] = amounts.money(group.get("cost_usd"))
        tokens = [group.get(kind) for kind in TOKEN_KINDS]
        cells["tokens"] = amounts.count(sum(tokens)) if None not in tokens else "-"
        if stats.get("bucket"):
            cells[leading[0]] = render.bucket(group["bucket"], stats["bucket"])
        if stats.get("group_by"):
            cells[leading[-1]] = str(group["key"])
        rows.append(cells)
    spent = ("cost", "tokens") if used else ()
    layouts = tuple((*leading, *layout, *spent) for layout in STAT_LAYOUTS)
    layouts += tuple((*leading, *layout, *spent[:1]) for layout in STAT_LAYOUTS[-2:])
    right = (*STAT_COLUMNS, *spent)
    console().print(render.fitted_table(rows, layouts, console().width, right=right))


# The stats columns people read, by their short names, and which to show at each width:
# the fullest first; counts of running and cleanly ended sessions go first, then means.
STAT_COLUMNS = {
    "total": "total",
    "active": "active",
    "ended": "ended",
    "crashed": "crashed",
    "abandoned": "abandoned",
    "mean": "duration_mean",
    "p50": "duration_p50",
    "p95": "duration_p95",
    "crash%": "crash_rate",
    "abandon%": "abandon_rate",
}
STAT_LAYOUTS = (
    tuple(STAT_COLUMNS),
    ("total", "active", "crashed", "abandoned", "p50", "p95", "crash%", "abandon%"),
    ("total", "crashed", "abandoned", "p50", "p95", "crash%", "abandon%"),
    ("total", "p50", "p95", "crash%", "abandon%"),
    ("total", "p50", "crash%"),
    ("total", "crash%"),
)


def _stat(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in ("mean", "p50", "p95"):
        return human_duration(value)
    if name.endswith("%"):
        return f"{value:.0%}"
    return str(value)


@main.command("reap")
@database_url_option
@json_option
def reap_command(database_url: str | None, as_json: bool) -> None:
    """Mark silent sessions, and local ones whose process is gone, as abandoned."""
    reaped = run_with_service(database_url, lambda service: service.reap())
    if as_json:
        print_json({"abandoned": reaped})
    else:
        click.echo(f"abandoned {len(reaped)} session(s)")
        for session_id in reaped:
            click.echo(f"  {session_id}")


@main.command("prune")
@click.option("--older-than", type=Span(), help="Sessions quiet this long (e.g. 90d).")
@click.option("--before", type=When(), help="Sessions quiet since before this time.")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@database_url_option
@json_option
def prune_command(
    older_than: Any, before: str | None, dry_run: bool, database_url: str | None, as_json: bool
) -> None:
    """Delete ended, crashed and abandoned sessions whose last activity is before a time,
    with their event log, in small batches (writers never wait long). Active ones stay."""
    if (older_than is None) == (before is None):
        raise click.UsageError("give one of --older-than or --before")
    cutoff = before or str(format_micros(to_micros(datetime.now(UTC) - older_than)))
    report = run_with_service(
        database_url, lambda service: service.manager.prune(cutoff, dry_run=dry_run)
    )
    if as_json:
        print_json(dataclasses.asdict(report) | {"before": cutoff})
        return
    states = ", ".join(f"{n} {status}" for status, n in sorted(report.by_status.items()))
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {report.sessions} session(s) quiet since before {cutoff}"
        + (f" ({states})" if states else "")
        + f" and {report.events} event(s)"
    )
    if not dry_run and report.batches:
        click.echo(
            f"{report.batches} batch(es) in {report.seconds:.1f} s, the longest "
            f"{report.longest_batch_ms:.0f} ms; {report.pages_returned} page(s) given back"
        )


@main.group()
def db() -> None:
    """Manage the session database."""


@db.command("upgrade")
@database_url_option
def upgrade_command(database_url: str | None) -> None:
    """Apply pending schema migrations (opening the store does this too)."""
    from session_buddy.core.store import open_store

    settings = Settings.from_environment().with_flags(database_url=database_url)
    url = settings.database_url
    try:
        store = open_store(url, sqlite_synchronous=settings.sqlite_synchronous)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(store.close())
    click.echo(f"{without_password(url)}: schema up to date")


@db.command("backup")
@click.argument("path", required=False, type=click.Path(dir_okay=True))
@database_url_option
def backup_command(path: str | None, database_url: str | None) -> None:
    """Copy a live SQLite store, consistent, while it keeps serving (SQLite's online
    backup), to PATH: a new file, or a folder to put sessions-<UTC time>.db in (made if
    need be); without PATH, into backups/ beside the store. For PostgreSQL, use pg_dump."""
    import os
    import sqlite3
    import time
    from pathlib import Path

    url = Settings.from_environment().with_flags(database_url=database_url).database_url
    if not url.startswith("sqlite:///"):
        raise click.ClickException(
            f"{without_password(url)} is PostgreSQL: back it up with pg_dump"
        )
    source_path = Path(url.removeprefix("sqlite:///").split("?")[0])
    if not source_path.is_file():
        raise click.ClickException(f"no session database at {source_path}")
    name = f"sessions-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.db"
    if path is None:
        target = source_path.parent / "backups" / name
    elif path.endswith("/") or Path(path).expanduser().is_dir():
        target = Path(path).expanduser() / name
    else:
        target = Path(path).expanduser()
    if target.exists():
        raise click.ClickException(
            f"{target} exists: give a new file, or a folder for sessions-<time>.db"
        )
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy, pages=1024)  # in steps, so writers are not held up
        finally:
            copy.close()
            source.close()
        os.replace(partial, target)  # whole, or not at all
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot back up to {target}: {exc}") from None
    click.echo(f"backed up {source_path} to {target}")
