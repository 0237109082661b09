"""The `session-buddy` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

    from session_buddy.app.service import SessionService
    from session_buddy.client.delivery import Courier, Sent
    from session_buddy.client.spool import Spool

from session_buddy import __version__
from session_buddy.config import Settings
from session_buddy.core.records import GROUP_KEYS, StatsGroup
from session_buddy.core.states import ACTIVITIES, SessionStatus

T = TypeVar("T")

database_url_option = click.option(
    "--database-url",
    help="sqlite:///path.db or postgresql://user@host/db "
    "(default: $SESSION_BUDDY_DATABASE_URL, else the embedded store).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def run_with_service(
    database_url: str | None,
    action: Callable[[SessionService], Awaitable[T]],
    *,
    read_only: bool = False,
) -> T:
    """Open the store (`read_only`: an existing one, without locking or creating
    anything), run one async action on the service, close the store."""
    import asyncio

    from session_buddy.app.service import SessionService
    from session_buddy.core import SessionLifecycleManager

    async def main() -> T:
        async with SessionLifecycleManager(database_url, read_only=read_only) as manager:
            return await action(SessionService(manager))

    try:
        return asyncio.run(main())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def run_tool(database_url: str | None, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One read tool call on the store, the way the MCP server answers it; errors exit 1."""
    from session_buddy.app.tools import call_tool

    result = run_with_service(
        database_url, lambda service: call_tool(service, tool, arguments), read_only=True
    )
    if result.get("status") == "error":
        raise click.ClickException(str(result.get("error")))
    return result


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
    import asyncio

    from session_buddy.runner import configure_logging, serve_http, serve_stdio

    settings = Settings.from_environment().with_flags(database_url=database_url)
    configure_logging(settings.log_level)
    try:
        if use_http:
            asyncio.run(
                serve_http(
                    settings,
                    host=host,
                    port=port,
                    allowed_hosts=allowed_hosts,
                    insecure_bind=insecure_bind,
                    stateless=stateless,
                )
            )
        else:
            asyncio.run(serve_stdio(settings))
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
    from session_buddy.app.auth import TokenAuthority

    authority = TokenAuthority.from_secret(Settings.from_environment().secret)
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
@click.option("--status", type=click.Choice([status.value for status in SessionStatus]))
@click.option("--active", is_flag=True, help="Only sessions running now (same as --status active).")
@click.option("--component", "component_name")
@click.option("--shell-type")
@click.option("--hostname")
@click.option("--username")
@click.option("--external-id", help="The client's own session id (e.g. Claude Code's).")
@click.option(
    "--activity", type=click.Choice(ACTIVITIES), help="What active sessions are doing now."
)
@click.option("--since", "started_after", help="Started at or after this ISO 8601 time.")
@click.option("--until", "started_before", help="Started before this ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="next_cursor from a previous --json page.")
def list_command(database_url: str | None, as_json: bool, active: bool, **filters: Any) -> None:
    """List sessions, newest first."""
    if active:
        filters["status"] = "active"
    page = run_tool(database_url, "list_sessions", filters)
    if as_json:
        print_json(page)
        return
    from rich.table import Table

    table = Table("session id", "status", "shell", "host", "user", "pid", "started", "duration s")
    for s in page["sessions"]:
        activity = f" ({s['activity']})" if s["status"] == "active" and s["activity"] else ""
        table.add_row(
            s["session_id"],
            s["status"] + activity,
            s["shell_type"],
            s["hostname"],
            s["username"],
            _fmt(s["pid"]),
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
    record = run_tool(database_url, "get_session", {"session_id": session_id})
    if record["status"] == "not_found":
        if as_json:
            print_json(record)
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
    type=click.Choice(GROUP_KEYS),
    default="component_name",
    show_default=True,
)
@click.option("--since", help="Sessions started at or after this ISO 8601 time.")
@click.option("--until", help="Sessions started before this ISO 8601 time.")
def stats_command(
    database_url: str | None, as_json: bool, group_by: str, since: str | None, until: str | None
) -> None:
    """Counts, durations and failure rates per group."""
    arguments = {"group_by": group_by, "since": since, "until": until}
    stats = run_tool(database_url, "session_stats", arguments)
    if as_json:
        print_json(stats)
        return
    columns = [field.name for field in dataclasses.fields(StatsGroup) if field.name != "key"]
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
    reaped = run_with_service(database_url, lambda service: service.reap())
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
    import asyncio

    from session_buddy.core.store import open_store

    settings = Settings.from_environment().with_flags(database_url=database_url)
    url = settings.database_url
    try:
        store = open_store(url, sqlite_synchronous=settings.sqlite_synchronous)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(store.close())
    shown = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)  # never print a password
    click.echo(f"{shown}: schema up to date")


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Target:
    """Where a sending command delivers (a server, or the store directly) and how."""

    server_url: str | None
    database_url: str | None
    token: str | None
    timeout: float
    spool_path: Path
    spool_max: int


def transport_options(timeout: float) -> Callable[[F], F]:
    """--server-url, --database-url, --token and --timeout, passed on as `target`."""

    def apply(command: F) -> F:
        @functools.wraps(command)
        def with_target(
            *args: Any,
            server_url: str | None,
            database_url: str | None,
            token: str | None,
            timeout: float,
            **kwargs: Any,
        ) -> Any:
            settings = Settings.from_environment()
            target = Target(
                server_url or settings.server_url,
                database_url,
                token or settings.token,
                timeout,
                settings.spool_path,
                settings.spool_max,
            )
            return command(*args, target=target, **kwargs)

        wrapped: Any = with_target
        for option in reversed(
            [
                click.option(
                    "--server-url",
                    help="http://host:8678/mcp or stdio:[command] "
                    "(default: $SESSION_BUDDY_SERVER_URL, else the store itself).",
                ),
                database_url_option,
                click.option(
                    "--token",
                    help="Bearer token, when the server needs one (default: $SESSION_BUDDY_TOKEN).",
                ),
                click.option(
                    "--timeout",
                    type=float,
                    default=timeout,
                    show_default=True,
                    help="Seconds per send.",
                ),
            ]
        ):
            wrapped = option(wrapped)
        return cast(F, wrapped)

    return apply


def open_spool(target: Target) -> Spool:
    from session_buddy.client.spool import Spool

    return Spool(target.spool_path, max_pending=target.spool_max)


@contextlib.contextmanager
def courier_for(target: Target, url: str | None = None) -> Iterator[Courier]:
    """A courier for the target's destination (or for `url`, a destination of the
    spool), closed afterwards."""
    from session_buddy.client.delivery import Courier, destination_url, is_local, token_identity
    from session_buddy.client.spool import Destination
    from session_buddy.client.transports import open_transport

    url = url or destination_url(target.server_url, target.database_url)
    local = is_local(url)
    try:
        transport = open_transport(
            None if local else url,
            url if local else None,
            token=target.token,
            timeout=target.timeout,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    spool = open_spool(target)
    try:
        destination = Destination(url, token_identity(target.token))
        yield Courier(transport, spool, destination, token=target.token)
    finally:
        transport.close()
        spool.close()


def finish_send(sent: Sent, placeholder: str | None = None) -> None:
    """Print what became of an event; exit non-zero unless it was delivered or is kept
    for a reason that may pass."""
    from session_buddy.client.outcomes import Outcome

    if sent.outcome is Outcome.DELIVERED:
        return
    if sent.spooled and placeholder:
        click.echo(placeholder)
    if sent.outcome is Outcome.TRANSIENT and sent.spooled:
        return
    if sent.outcome is Outcome.CREDENTIALS:
        raise click.ClickException(
            "the event is kept; fix the token, then: session-buddy spool flush"
        )
    raise click.ClickException(f"the event was not recorded: {sent.reason}")


# Per send: with interpreter start-up, an `emit` stays within 1 s even when the server hangs.
EMIT_TIMEOUT = 0.5


@main.group()
def emit() -> None:
    """Report a session from a shell script (undeliverable events are spooled)."""


@emit.command("start")
@click.option("--component", "component_name", required=True, help="Component name.")
@click.option("--shell-type", default="Script", show_default=True)
@click.option("--pid", type=int, help="Process the session belongs to (default: the caller).")
@click.option("--metadata", help="JSON object stored with the start.")
@transport_options(timeout=EMIT_TIMEOUT)
def emit_start(
    component_name: str,
    shell_type: str,
    pid: int | None,
    metadata: str | None,
    target: Target,
) -> None:
    """Record a start; prints the session id (or spooled:<event id> when spooled)."""
    import os

    from session_buddy.client.delivery import SPOOLED_PREFIX
    from session_buddy.client.events import start_event

    try:
        details = json.loads(metadata) if metadata else {}
    except ValueError as exc:
        raise click.ClickException(f"--metadata is not JSON: {exc}") from exc
    if not isinstance(details, dict):
        raise click.ClickException("--metadata must be a JSON object")
    event = start_event(component_name, shell_type, pid=pid or os.getppid(), metadata=details)
    with courier_for(target) as courier:
        sent = courier.start(event)
    if sent.session_id:
        click.echo(sent.session_id)
        return
    finish_send(sent, f"{SPOOLED_PREFIX}{event['event_id']}")


@emit.command("end")
@click.option("--session-id", required=True, help="What `emit start` printed.")
@click.option("--exit-code", type=int, default=0, show_default=True)
@click.option("--exit-reason", help="e.g. user_exit, crash, signal:SIGTERM")
@transport_options(timeout=EMIT_TIMEOUT)
def emit_end(
    session_id: str,
    exit_code: int,
    exit_reason: str | None,
    target: Target,
) -> None:
    """Record an end; prints the session's final state (ended, crashed) or `spooled`."""
    from session_buddy.client.delivery import SPOOLED_PREFIX
    from session_buddy.client.events import end_event

    with courier_for(target) as courier:
        start_event_id = None
        if session_id.startswith(SPOOLED_PREFIX):
            start_event_id = session_id.removeprefix(SPOOLED_PREFIX)
            session_id = courier.spool.known_session_id(start_event_id) or ""
        event = end_event(session_id or None, exit_code=exit_code, exit_reason=exit_reason)
        sent = courier.end(session_id or None, event, start_event_id=start_event_id)
    if sent.result.get("status") == "ended":
        click.echo(str(sent.result.get("session_status") or "ended"))
        return
    finish_send(sent, "spooled")


@emit.command("heartbeat")
@click.option("--session-id", required=True)
@transport_options(timeout=EMIT_TIMEOUT)
def emit_heartbeat(session_id: str, target: Target) -> None:
    """Tell session-buddy a session is still alive."""
    from session_buddy.timestamps import now_iso

    with courier_for(target) as courier:
        alive = courier.heartbeat(session_id, now_iso())
    if not alive:
        raise click.ClickException("heartbeat not delivered")


@main.group()
def spool() -> None:
    """Events that could not be delivered yet, per destination."""


@spool.command("list")
@click.option("--rejected", is_flag=True, help="Records refused for good or unreadable, each.")
@json_option
@transport_options(timeout=1.0)
def spool_list(rejected: bool, as_json: bool, target: Target) -> None:
    """What waits, per destination (--json: every record; --rejected: the refused and the
    unreadable, with the reason)."""
    from session_buddy.client.spool import PENDING, QUARANTINED, REJECTED

    spool = open_spool(target)
    try:
        items = spool.listing((REJECTED, QUARANTINED) if rejected else (PENDING,))
    finally:
        spool.close()
    records = [
        {
            "id": item.id,
            "destination": item.destination,
            "identity": item.identity,
            "state": item.state,
            "kind": (item.record() or {}).get("kind"),
            "attempts": item.attempts,
            "reason": item.reason,
            "record": item.record() or item.body,
        }
        for item in items
    ]
    if as_json:
        print_json(records)
        return
    from rich.table import Table

    if rejected:
        table = Table("id", "destination", "kind", "state", "reason")
        for item in items:
            kind = str((item.record() or {}).get("kind"))
            table.add_row(str(item.id), item.destination, kind, item.state, item.reason)
    else:
        table = Table("destination", "sent by", "pending", "tries of the oldest", "last reason")
        for url in dict.fromkeys(item.destination for item in items):
            mine = [item for item in items if item.destination == url]
            table.add_row(
                url,
                mine[0].identity or "-",
                str(len(mine)),
                str(mine[0].attempts),
                mine[-1].reason or "",
            )
    console().print(table)
    if not records:
        click.echo("nothing " + ("set aside" if rejected else "waiting") + " in the spool")


@spool.command("flush")
@transport_options(timeout=1.0)
def spool_flush(target: Target) -> None:
    """Deliver spooled events now, oldest first: every destination, or the one named with
    --server-url / --database-url. Records of an old spool.jsonl, whose destination was
    never written down, go to the destination this command is given."""
    from session_buddy.client.delivery import destination_url, token_identity
    from session_buddy.client.outcomes import Outcome
    from session_buddy.client.spool import LEGACY_DESTINATION, Destination

    spool = open_spool(target)
    chosen = target.server_url or target.database_url
    here = destination_url(target.server_url, target.database_url)
    moved = spool.rehome(LEGACY_DESTINATION, Destination(here, token_identity(target.token)))
    if moved:
        click.echo(
            f"session-buddy: {moved} record(s) of the old spool.jsonl go to {here}", err=True
        )
    urls = [here] if chosen else spool.destinations()
    spool.close()
    if not urls:
        click.echo("nothing waiting in the spool")
    failed = []
    for url in urls:
        with courier_for(target, url) as courier:
            report = courier.flush(now=True)
        click.echo(
            f"{url}: delivered {report.delivered}, rejected {report.rejected}, "
            f"quarantined {report.quarantined}, {report.remaining} still waiting"
        )
        if report.busy:
            failed.append(f"{url}: another process is delivering it")
        elif report.stopped_by is Outcome.CREDENTIALS:
            failed.append(f"{url}: credentials refused: {report.reason}")
        elif report.stopped_by is not None:
            failed.append(f"{url}: unreachable ({report.reason}); events stay in the spool")
    if failed:
        raise click.ClickException("; ".join(failed))


@spool.command("drop")
@click.argument("record_id", type=int)
@transport_options(timeout=1.0)
def spool_drop(record_id: int, target: Target) -> None:
    """Give up a spooled record for good (see `spool list`)."""
    spool = open_spool(target)
    try:
        if not spool.drop(record_id):
            raise click.ClickException(f"no spooled record {record_id}")
    finally:
        spool.close()
    click.echo(f"dropped {record_id}")


@main.group()
def hook() -> None:
    """Hooks for tools that report their own sessions."""


@hook.command("claude-code")
@transport_options(timeout=0.4)
def hook_claude_code(target: Target) -> None:
    """Record a Claude Code hook payload read from stdin: SessionStart, SessionEnd, the
    activity events (UserPromptSubmit, Stop, StopFailure, Notification, Pre/PostCompact)
    and subagents (SubagentStart, SubagentStop).

    Always exits 0 (Claude Code must never be held up); what happened goes to stderr.
    """
    from session_buddy.app import claude_code
    from session_buddy.client.claude_code import record
    from session_buddy.wire import MAX_HOOK_PAYLOAD_BYTES

    try:
        payload = claude_code.parse_payload(sys.stdin.buffer.read(MAX_HOOK_PAYLOAD_BYTES + 1))
        step = claude_code.step(payload)
        with courier_for(target) as courier:
            click.echo(record(step, courier), err=True)
    except Exception as exc:
        click.echo(f"session-buddy hook: {exc}", err=True)
