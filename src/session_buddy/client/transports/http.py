"""MCP over streamable HTTP (JSON replies), one kept-alive connection."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from session_buddy.client.transports.base import (
    DEFAULT_TIMEOUT,
    CredentialsError,
    RequestRefused,
    TransportError,
)
from session_buddy.client.transports.jsonrpc import (
    INITIALIZED,
    PROTOCOL_VERSION,
    initialize_params,
    request,
    tool_result,
)

if TYPE_CHECKING:
    import http.client


class HttpTransport:
    """MCP streamable HTTP (JSON replies) with one kept-alive connection."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Invalid server URL {url!r}: expected http://host:port/mcp")
        self._parts = parts
        self._path = parts.path or "/mcp"
        self._token = token
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._session: str | None = None
        self._initialized = False
        self._next_id = 0

    def _connect(self) -> http.client.HTTPConnection:
        import http.client  # on use, often in the emitter's background thread

        if self._connection is None:
            factory = (
                http.client.HTTPSConnection
                if self._parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = factory(
                self._parts.hostname or "", self._parts.port, timeout=self.timeout
            )
        self._connection.timeout = self.timeout
        return self._connection

    def _post(self, message: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._session:
            headers["Mcp-Session-Id"] = self._session
        import http.client

        try:
            connection = self._connect()
            connection.request("POST", self._path, json.dumps(message), headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError(f"cannot reach {self._parts.netloc}: {exc}") from exc
        session = response.getheader("mcp-session-id")
        if session:
            self._session = session
        if response.status in (401, 403):
            reason = _refusal_reason(body, response.getheader("www-authenticate"))
            raise CredentialsError(
                f"the server refused the token (HTTP {response.status}): {reason}"
            )
        if response.status == 413:
            raise RequestRefused("the server refused the event as too large (HTTP 413)")
        if response.status >= 500 or response.status == 429:
            self.close()
            raise TransportError(f"the server is unavailable (HTTP {response.status})")
        if not body:
            return response.status, None
        return response.status, _decode(body, response.getheader("content-type", ""))

    def _initialize(self) -> None:
        self._session = None
        self._next_id += 1
        status, reply = self._post(request(self._next_id, "initialize", initialize_params()))
        if status != 200 or reply is None or "result" not in reply:
            raise TransportError(f"initialize failed (HTTP {status})")
        self._post(INITIALIZED)
        self._initialized = True

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if not self._initialized:
            self._initialize()
        self._next_id += 1
        message = request(self._next_id, "tools/call", {"name": tool, "arguments": arguments})
        status, reply = self._post(message)
        if status == 404 and self._session:  # the server restarted and forgot the session
            self._initialize()
            status, reply = self._post(message)
        if status != 200 or reply is None:
            raise TransportError(f"tools/call {tool} failed (HTTP {status})")
        return tool_result(reply)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._initialized = False


def _refusal_reason(body: bytes, challenge: str | None) -> str:
    """What the server said about refused credentials: its refusal's `error` (a JSON-RPC
    error's `message` from older servers), else its WWW-Authenticate challenge."""
    try:
        error = json.loads(body)["error"]
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return challenge or "no reason given"


def _decode(body: bytes, content_type: str) -> dict[str, Any]:
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise TransportError(f"the server sent a reply that is not UTF-8: {exc}") from exc
    if "text/event-stream" in content_type:
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1] if data else "{}"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise TransportError(f"the server sent invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TransportError("the server sent an unexpected reply")
    return value
