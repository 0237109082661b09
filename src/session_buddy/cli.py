"""The `session-buddy` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

from session_buddy import __version__
from session_buddy.core import SessionLifecycleManager
from session_buddy.core.store import open_store

T = TypeVar("T")

database_url_option = click.option(
    "--database-url",
    envvar="SESSION_BUDDY_DATABASE_URL",
    help="sqlite:///path.db or postgresql://user@host/db (default: the embedded store).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def run_with_manager(
    database_url: str | None, action: Callable[[SessionLifecycleManager], Awaitable[T]]
) -> T:
    """Open the store, run one async action against it, close the store."""

    async def main() -> T:
        async with SessionLifecycleManager(database_url) as manager:
            return await action(manager)

    try:
        return asyncio.run(main())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def console() -> Console:
    """Rich output; wide enough when piped that session ids are never cut."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:.1f}"
    return str(value)


@click.group()
@click.version_option(__version__, prog_name="session-buddy")
def main() -> None:
    """Track the lifecycle of interactive shells and agents."""


@main.command("serve")
@database_url_option
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP address to bind.")
@click.option("--port", type=int, default=8678, show_default=True, help="HTTP port.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Extra Host header value to accept (DNS-rebinding protection); repeatable.",
)
@click.option(
    "--insecure-bind",
    is_flag=True,
    help="Allow a non-loopback --host without SESSION_BUDDY_SECRET.",
)
@click.option(
    "--stateless",
    is_flag=True,
    help="Keep no MCP sessions (for several servers behind a load balancer).",
)
def serve_command(
    database_url: str | None,
    use_http: bool,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    insecure_bind: bool,
    stateless: bool,
) -> None:
    """Run the MCP server (stdio by default, --http for streamable HTTP on /mcp)."""
    from session_buddy.mcp.serve import configure_logging, serve_http, serve_stdio

    configure_logging()
    try:
        if use_http:
            asyncio.run(
                serve_http(
                    database_url,
                    host=host,
                    port=port,
                    allowed_hosts=allowed_hosts,
                    insecure_bind=insecure_bind,
                    stateless=stateless,
                )
            )
        else:
            asyncio.run(serve_stdio(database_url))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


@main.group()
def token() -> None:
    """Bearer tokens for servers that have SESSION_BUDDY_SECRET set."""


@token.command("create")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="sessions:read and/or sessions:write (repeat, or space-separate).",
)
@click.option("--ttl", type=int, default=3600, show_default=True, help="Lifetime in seconds.")
@click.option("--subject", default="cli", show_default=True, help="Who the token is for.")
def token_create(scopes: tuple[str, ...], ttl: int, subject: str) -> None:
    """Mint a token signed with $SESSION_BUDDY_SECRET (printed on the last line)."""
    from session_buddy.mcp.auth import TokenAuthority

    authority = TokenAuthority.from_environment()
    if authority is None:
        raise click.ClickException("SESSION_BUDDY_SECRET is not set")
    wanted = [scope for value in scopes for scope in value.split()]
    try:
        click.echo(authority.create(wanted, ttl, subject))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def sessions() -> None:
    """Look at stored sessions."""


@sessions.command("list")
@database_url_option
@json_option
@click.option("--status", type=click.Choice(["active", "ended", "crashed", "abandoned"]))
@click.option("--active", is_flag=True, help="Only sessions running now (same as --status active).")
@click.option("--component", "component_name")
@click.option("--shell-type")
@click.option("--hostname")
@click.option("--username")
@click.option("--since", "started_after", help="Started at or after this ISO 8601 time.")
@click.option("--until", "started_before", help="Started before this ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="next_cursor from a previous --json page.")
def list_command(database_url: str | None, as_json: bool, active: bool, **filters: Any) -> None:
    """List sessions, newest first."""
    if active:
        filters["status"] = "active"
    page = run_with_manager(database_url, lambda m: m.list_sessions(**filters))
    if as_json:
        print_json(page)
        return
    from rich.table import Table

    table = Table("session id", "status", "shell", "host", "user", "pid", "started", "duration s")
    for s in page["sessions"]:
        table.add_row(
            s["session_id"],
            s["status"],
            s["shell_type"],
            s["hostname"],
            s["username"],
            str(s["pid"]),
            s["started_at"],
            _fmt(s["duration_seconds"]),
        )
    console().print(table)
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@sessions.command("show")
@click.argument("session_id")
@database_url_option
@json_option
def show_command(session_id: str, database_url: str | None, as_json: bool) -> None:
    """Show one session."""
    record = run_with_manager(database_url, lambda m: m.get_session(session_id))
    if record is None:
        if as_json:
            print_json({"session_id": session_id, "status": "not_found"})
        click.echo(f"Error: no session {session_id!r}", err=True)
        sys.exit(1)
    if as_json:
        print_json(record)
        return
    from rich.table import Table

    table = Table("field", "value", show_header=False)
    for field, value in record.items():
        table.add_row(field, json.dumps(value) if isinstance(value, dict) else _fmt(value))
    console().print(table)


@main.command("stats")
@database_url_option
@json_option
@click.option(
    "--by",
    "group_by",
    type=click.Choice(["component_name", "shell_type", "hostname", "username"]),
    default="component_name",
    show_default=True,
)
@click.option("--since", help="Sessions started at or after this ISO 8601 time.")
@click.option("--until", help="Sessions started before this ISO 8601 time.")
def stats_command(
    database_url: str | None, as_json: bool, group_by: str, since: str | None, until: str | None
) -> None:
    """Counts, durations and failure rates per group."""
    stats = run_with_manager(database_url, lambda m: m.session_stats(group_by, since, until))
    if as_json:
        print_json(stats)
        return
    columns = [
        "total",
        "active",
        "ended",
        "crashed",
        "abandoned",
        "duration_mean",
        "duration_p50",
        "duration_p95",
        "crash_rate",
        "abandon_rate",
    ]
    from rich.table import Table

    table = Table(group_by, *columns)
    for group in stats["groups"]:
        table.add_row(str(group["key"]), *(_fmt(group[c]) for c in columns))
    console().print(table)


@main.command("reap")
@database_url_option
@json_option
def reap_command(database_url: str | None, as_json: bool) -> None:
    """Mark silent sessions, and local ones whose process is gone, as abandoned."""
    reaped = run_with_manager(database_url, lambda m: m.reap())
    if as_json:
        print_json({"abandoned": reaped})
    else:
        click.echo(f"abandoned {len(reaped)} session(s)")
        for session_id in reaped:
            click.echo(f"  {session_id}")


@main.group()
def db() -> None:
    """Manage the session database."""


@db.command("upgrade")
@database_url_option
def upgrade_command(database_url: str | None) -> None:
    """Apply pending schema migrations (opening the store does this too)."""
    from session_buddy.config import resolve_database_url

    url = resolve_database_url(database_url)
    try:
        store = open_store(url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(store.close())
    click.echo(f"{url}: schema up to date")
