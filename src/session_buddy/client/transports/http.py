"""MCP over streamable HTTP (JSON replies), one kept-alive connection.

A call (with the handshake it may need) has one deadline, `timeout` seconds, for all of
its exchanges, and a reply is read only up to MAX_REPLY bytes (`client/http11.py`).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

from session_buddy.client.http11 import Connection, HttpError, request_bytes
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
from session_buddy.config import normalized_server_url

MAX_REPLY = 32 * 1024 * 1024  # a page of 500 sessions with large metadata fits


class HttpTransport:
    """MCP streamable HTTP (JSON replies) with one kept-alive connection."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        url = normalized_server_url(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Invalid server URL {url!r}: expected http://host:port/mcp")
        https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._path = parts.path
        self._connection = Connection(
            parts.hostname, parts.port or (443 if https else 80), tls=https
        )
        self._token = token
        self.timeout = timeout
        self._session: str | None = None
        self._initialized = False
        self._next_id = 0

    def _post(self, message: dict[str, Any], deadline: float) -> tuple[int, dict[str, Any] | None]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._session:
            headers["Mcp-Session-Id"] = self._session
        body = json.dumps(message).encode()
        sent = request_bytes("POST", self._path, self._netloc, headers, body)
        try:
            left = deadline - time.monotonic()
            reply = self._connection.exchange(sent, timeout=left, max_reply=MAX_REPLY)
        except HttpError as exc:
            self.close()
            raise TransportError(f"cannot reach {self._netloc}: {exc}") from exc
        session = reply.headers.get("mcp-session-id")
        if session:
            self._session = session
        if reply.status in (401, 403):
            reason = _refusal_reason(reply.body, reply.headers.get("www-authenticate"))
            raise CredentialsError(f"the server refused the token (HTTP {reply.status}): {reason}")
        if reply.status == 413:
            raise RequestRefused("the server refused the event as too large (HTTP 413)")
        if reply.status >= 500 or reply.status == 429:
            self.close()
            raise TransportError(f"the server is unavailable (HTTP {reply.status})")
        if not reply.body:
            return reply.status, None
        return reply.status, _decode(reply.body, reply.headers.get("content-type", ""))

    def _initialize(self, deadline: float) -> None:
        self._session = None
        self._next_id += 1
        message = request(self._next_id, "initialize", initialize_params())
        status, reply = self._post(message, deadline)
        if status != 200 or reply is None or "result" not in reply:
            raise TransportError(f"initialize failed (HTTP {status})")
        self._post(INITIALIZED, deadline)
        self._initialized = True

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One tool call, with the handshake it needs, all within `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        if not self._initialized:
            self._initialize(deadline)
        self._next_id += 1
        message = request(self._next_id, "tools/call", {"name": tool, "arguments": arguments})
        status, reply = self._post(message, deadline)
        if status == 404 and self._session:  # the server restarted and forgot the session
            self._initialize(deadline)
            status, reply = self._post(message, deadline)
        if status != 200 or reply is None:
            raise TransportError(f"tools/call {tool} failed (HTTP {status})")
        return tool_result(reply)

    def close(self) -> None:
        self._connection.close()
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
