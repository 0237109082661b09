"""`serve` (MCP over stdio or HTTP) and `token` (bearer tokens for a secured server)."""

from __future__ import annotations

import click

from session_buddy.cli.app import database_url_option, main
from session_buddy.config import Settings


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
@click.option(
    "--root-path",
    default="",
    help="The sub-path a reverse proxy serves the server under (/sb): every link, asset "
    "and form of the dashboard starts with it.",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1,::1",
    show_default=True,
    help="Proxies whose X-Forwarded-Prefix and X-Forwarded-Proto are believed (comma-separated).",
)
def serve_command(
    database_url: str | None,
    use_http: bool,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    insecure_bind: bool,
    stateless: bool,
    root_path: str,
    forwarded_allow_ips: str,
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
                    root_path=root_path,
                    trusted_proxies=[ip.strip() for ip in forwarded_allow_ips.split(",")],
                )
            )
        else:
            asyncio.run(serve_stdio(settings))
    except KeyboardInterrupt:
        pass  # a start-up refusal (ValueError, SessionBuddyError) is one line, exit 2


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
