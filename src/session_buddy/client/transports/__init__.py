"""How a shell reaches session-buddy: MCP over HTTP, MCP over stdio, or the store itself
(one module each)."""

from __future__ import annotations

import shlex

from session_buddy.client.transports.base import (
    DEFAULT_TIMEOUT,
    CredentialsError,
    RequestRefused,
    Transport,
    TransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "CredentialsError",
    "RequestRefused",
    "Transport",
    "TransportError",
    "open_transport",
]


def open_transport(
    server_url: str | None,
    database_url: str | None,
    *,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Transport:
    """HTTP for http(s):// URLs, stdio for `stdio:` or `stdio:<command>`, else the store.

    Each transport's module is imported only when chosen: a shell pays for one."""
    if server_url and server_url.startswith("stdio:"):
        from session_buddy.client.transports.stdio import StdioTransport, default_stdio_command

        command = shlex.split(server_url.removeprefix("stdio:")) or default_stdio_command()
        return StdioTransport(command, timeout=timeout)
    if server_url:
        from session_buddy.client.transports.http import HttpTransport

        return HttpTransport(server_url, token=token, timeout=timeout)
    from session_buddy.client.transports.local import LocalTransport

    return LocalTransport(database_url, timeout=timeout)
