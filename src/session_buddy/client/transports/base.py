"""What every transport is: `call(tool, arguments)` answers the tool's structured result,
or raises TransportError when the event could not be delivered (so it can be spooled)."""

from __future__ import annotations

from typing import Any, Protocol

DEFAULT_TIMEOUT = 1.0


class TransportError(Exception):
    """The event did not reach session-buddy; try again later."""


class CredentialsError(TransportError):
    """The server refused the credentials (HTTP 401/403); the message is its reason."""


class RequestRefused(TransportError):
    """The server refused the request itself (e.g. too large); retrying cannot help."""


class Transport(Protocol):
    timeout: float

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...
