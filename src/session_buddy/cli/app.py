"""What every command shares: the `main` group, where data comes from (a server over MCP,
or the store itself), and output helpers."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

    from session_buddy.app.service import SessionService

from session_buddy import __version__
from session_buddy.config import Settings

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


def console() -> Console:
    """Rich output: the terminal's width (or $COLUMNS); when piped, wide enough that
    nothing is cut. Colour only on a terminal, and never with $NO_COLOR."""
    from rich.console import Console

    sized = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(width=None if sized else 200)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="session-buddy")
def main() -> None:
    """Track the lifecycle of interactive shells and agents."""


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


def read_tool(
    target: Target, tool: str, arguments: dict[str, Any], *, read_only: bool = True
) -> dict[str, Any]:
    """One tool call: over MCP to the target's server (with its token), else on the
    store itself, opened read-only unless the tool writes. An error result exits 1."""
    if target.server_url:
        result = _ask_server(target, tool, arguments)
    else:
        from session_buddy.app.tools import call_tool

        result = run_with_service(
            target.database_url,
            lambda service: call_tool(service, tool, arguments),
            read_only=read_only,
        )
    if result.get("status") == "error":
        raise click.ClickException(str(result.get("error")))
    return result


def _ask_server(target: Target, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from session_buddy.client.transports import TransportError, open_transport

    assert target.server_url is not None
    try:
        transport = open_transport(
            target.server_url, None, token=target.token, timeout=target.timeout
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if target.token and target.server_url.startswith("stdio:"):
        arguments = arguments | {"token": target.token}  # no header to carry it
    try:
        return transport.call(tool, arguments)
    except TransportError as exc:
        raise click.ClickException(f"{target.server_url}: {exc}") from exc
    finally:
        transport.close()
