"""Commands that report sessions: `emit` for scripts, `hook` for tools that report
their own (Claude Code), and `spool` for what could not be delivered yet."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from session_buddy.cli.app import Target, console, json_option, main, print_json, transport_options
from session_buddy.client.claude_hook import HOOK_TIMEOUT
from session_buddy.config import without_password

if TYPE_CHECKING:
    from session_buddy.client.delivery import Courier, Sent
    from session_buddy.client.spool import Spool


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


def _store_trouble(store: str, reason: str) -> str:
    """Why an event for a local store is spooled, and what would cure it."""
    shown = without_password(store)
    said = f"session-buddy: {shown} cannot be written now ({reason}); the event is spooled"
    if "does not exist" in reason and store.startswith("postgresql"):
        name = store.rsplit("/", 1)[-1].split("?")[0]
        fix = f"session-buddy db upgrade --database-url {shown}"
        return f"{said}. Create the database (createdb {name}), then: {fix}"
    if "no such table" in reason or "schema" in reason:
        return (
            f"{said}. Bring its schema up to date: session-buddy db upgrade --database-url {shown}"
        )
    return f"{said}. Once it answers: session-buddy spool flush"


def local_store(target: Target) -> str | None:
    """The store the target writes into directly, or None when it sends to a server."""
    from session_buddy.client.delivery import destination_url, is_local

    url = destination_url(target.server_url, target.database_url)
    return url if is_local(url) else None


def finish_send(sent: Sent, placeholder: str | None = None, store: str | None = None) -> None:
    """Print what became of an event; exit non-zero unless it was delivered or is kept
    for a reason that may pass. `store`: the local store it was for, if it was (a store
    that cannot be written is said loudly, with the fix)."""
    from session_buddy.client.outcomes import Outcome

    if sent.outcome is Outcome.DELIVERED:
        return
    if sent.spooled and placeholder:
        click.echo(placeholder)
    if sent.outcome is Outcome.TRANSIENT and sent.spooled:
        if store is not None:  # a store that does not answer is set up wrong, or down
            click.echo(_store_trouble(store, sent.reason), err=True)
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
    finish_send(sent, f"{SPOOLED_PREFIX}{event['event_id']}", local_store(target))


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
    finish_send(sent, "spooled", local_store(target))


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


@main.command("init", context_settings={"ignore_unknown_options": True})
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def init_command(shell: str) -> None:
    """Make each interactive shell a session: eval "$(session-buddy init bash)" in
    ~/.bashrc (zsh: ~/.zshrc; fish: session-buddy init fish | source)."""
    from session_buddy.client.shell_init import run

    raise SystemExit(run([shell]))


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
    if not records:
        click.echo("nothing " + ("set aside" if rejected else "waiting") + " in the spool")
        return
    from rich.table import Table

    if rejected:
        table = Table("id", "destination", "kind", "state", "reason")
        for item in items:
            kind = str((item.record() or {}).get("kind"))
            table.add_row(str(item.id), item.destination, kind, item.state, item.reason)
    else:
        table = Table(
            "destination", "ids", "sent by", "pending", "tries of the oldest", "last reason"
        )
        for url in dict.fromkeys(item.destination for item in items):
            mine = [item for item in items if item.destination == url]
            table.add_row(
                url,
                id_ranges([item.id for item in mine]),
                mine[0].identity or "-",
                str(len(mine)),
                str(mine[0].attempts),
                mine[-1].reason or "",
            )
    console().print(table)


def id_ranges(ids: list[int]) -> str:
    """Record ids as people read them: `3-7, 9`."""
    ranges: list[list[int]] = []
    for record_id in sorted(ids):
        if ranges and record_id == ranges[-1][1] + 1:
            ranges[-1][1] = record_id
        else:
            ranges.append([record_id, record_id])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


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
        if report.unremoved:
            click.echo(
                f"session-buddy: {report.unremoved} delivered record(s) stay in the spool "
                f"({report.reason}); the next flush sends them again, harmlessly",
                err=True,
            )
        if report.busy:
            failed.append(f"{url}: another flush is delivering it")
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
@click.option("--server-url", help="http(s)://host:8678/mcp (default: $SESSION_BUDDY_SERVER_URL).")
@click.option(
    "--database-url",
    help="The store, when there is no server (default: $SESSION_BUDDY_DATABASE_URL, else "
    "the embedded store).",
)
@click.option("--token", help="Bearer token for the server (default: $SESSION_BUDDY_TOKEN).")
@click.option(
    "--token-file",
    help="A file (mode 0600) holding the token, so the settings file never does "
    "(default: $SESSION_BUDDY_TOKEN_FILE).",
)
@click.option(
    "--timeout", type=float, default=HOOK_TIMEOUT, show_default=True, help="Seconds to deliver."
)
def hook_claude_code(**flags: str | float | None) -> None:
    """Record a Claude Code hook payload read from stdin: SessionStart, SessionEnd, the
    activity events (UserPromptSubmit, Pre/PostToolUse, Stop, StopFailure, Notification,
    Pre/PostCompact) and subagents (SubagentStart, SubagentStop).

    Always exits 0 (Claude Code must never be held up); what happened goes to stderr.
    """
    from session_buddy.client.claude_hook import run

    given = [f"--{name.replace('_', '-')}={value}" for name, value in flags.items() if value]
    click.echo(run(given) or "session-buddy hook: unusable arguments", err=True)
