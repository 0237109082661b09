"""How a shell reaches session-buddy: MCP over HTTP, MCP over stdio, or the store itself.

Every transport answers `call(tool, arguments)` with the tool's structured result, and
raises TransportError when the event could not be delivered (server down, timeout), so
the caller can spool it. The HTTP and stdio clients are small stdlib JSON-RPC clients:
a shell should not pay for importing a full MCP SDK.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from session_buddy import __version__

if TYPE_CHECKING:
    import asyncio
    import http.client

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "session-buddy-emitter", "version": __version__}
DEFAULT_TIMEOUT = 1.0
STDIO_STARTUP_TIMEOUT = 5.0


class TransportError(Exception):
    """The event did not reach session-buddy; try again later."""


class Transport(Protocol):
    timeout: float

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _initialize_params() -> dict[str, Any]:
    return {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}


def _tool_result(reply: dict[str, Any]) -> dict[str, Any]:
    """The structured content of a tools/call reply."""
    if "error" in reply:
        raise TransportError(f"server error: {reply['error'].get('message', reply['error'])}")
    result = reply.get("result") or {}
    content = result.get("structuredContent")
    if isinstance(content, dict):
        return content
    text = " ".join(c.get("text", "") for c in result.get("content", []) if isinstance(c, dict))
    return {"status": "error", "error": text or "the server sent no result"}


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
            raise TransportError(f"server refused the credentials (HTTP {response.status})")
        if not body:
            return response.status, None
        return response.status, _decode(body, response.getheader("content-type", ""))

    def _initialize(self) -> None:
        self._session = None
        self._next_id += 1
        status, reply = self._post(_request(self._next_id, "initialize", _initialize_params()))
        if status != 200 or reply is None or "result" not in reply:
            raise TransportError(f"initialize failed (HTTP {status})")
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self._initialized = True

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if not self._initialized:
            self._initialize()
        self._next_id += 1
        message = _request(self._next_id, "tools/call", {"name": tool, "arguments": arguments})
        status, reply = self._post(message)
        if status == 404 and self._session:  # the server restarted and forgot the session
            self._initialize()
            status, reply = self._post(message)
        if status != 200 or reply is None:
            raise TransportError(f"tools/call {tool} failed (HTTP {status})")
        return _tool_result(reply)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._initialized = False


def _decode(body: bytes, content_type: str) -> dict[str, Any]:
    text = body.decode()
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


class StdioTransport:
    """MCP over the stdin/stdout of a `session-buddy serve` child process."""

    def __init__(self, command: list[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._next_id = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise TransportError(f"cannot start {self.command[0]}: {exc}") from exc
        self._buffer = b""
        self._exchange("initialize", _initialize_params(), STDIO_STARTUP_TIMEOUT)
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self._process

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message).encode() + b"\n")
            self._process.stdin.flush()
        except OSError as exc:
            raise TransportError(f"the stdio server went away: {exc}") from exc

    def _exchange(self, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        self._send(_request(request_id, method, params))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == request_id:
                return reply

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TransportError("the stdio server did not answer in time")
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise TransportError("the stdio server exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise TransportError(f"the stdio server wrote non-JSON: {line[:80]!r}") from exc
        return message if isinstance(message, dict) else {}

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self._start()
        params = {"name": tool, "arguments": arguments}
        return _tool_result(self._exchange("tools/call", params, self.timeout))

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()  # the server sees EOF and closes its store
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.terminate()


class LocalTransport:
    """The store itself, in this process (no server): a private event loop thread."""

    def __init__(self, database_url: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.database_url = database_url
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._service: Any = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio

            from session_buddy.core import SessionLifecycleManager
            from session_buddy.mcp.service import SessionService

            try:
                manager = SessionLifecycleManager(self.database_url)
            except Exception as exc:
                raise TransportError(f"cannot open the session store: {exc}") from exc
            self._service = SessionService(manager)
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="session-buddy-local", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    def _run(self, make: Callable[[], Coroutine[Any, Any, Any]], timeout: float) -> Any:
        import asyncio

        future = asyncio.run_coroutine_threadsafe(make(), self._ensure())
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            raise TransportError("the session store did not answer in time") from exc
        except Exception as exc:
            raise TransportError(f"the session store failed: {exc}") from exc

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self._ensure()
        result: dict[str, Any] = self._run(
            lambda: call_service(self._service, tool, arguments), self.timeout
        )
        return result

    def close(self) -> None:
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        try:
            self._run_on(loop, self._service.manager.close())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=2)

    @staticmethod
    def _run_on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=5)


async def call_service(service: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Dispatch a tool call to SessionService the way the MCP server does."""
    args = dict(arguments)
    token = args.pop("token", None)
    result: dict[str, Any]
    if tool == "track_session_start":
        result = await service.track_session_start(args, token)
    elif tool == "track_session_end":
        result = await service.track_session_end(args, token)
    elif tool == "track_session_heartbeat":
        result = await service.track_session_heartbeat(
            args.get("session_id"), args.get("timestamp"), token
        )
    elif tool == "list_sessions":
        limit, cursor = args.pop("limit", None), args.pop("cursor", None)
        result = await service.list_sessions(args, limit, cursor, token)
    else:
        raise TransportError(f"tool {tool!r} is not available locally")
    return result


def default_stdio_command() -> list[str]:
    return [sys.executable, "-m", "session_buddy", "serve"]


def open_transport(
    server_url: str | None,
    database_url: str | None,
    *,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Transport:
    """HTTP for http(s):// URLs, stdio for `stdio:` or `stdio:<command>`, else the store."""
    if server_url and server_url.startswith("stdio:"):
        command = shlex.split(server_url.removeprefix("stdio:")) or default_stdio_command()
        return StdioTransport(command, timeout=timeout)
    if server_url:
        return HttpTransport(server_url, token=token, timeout=timeout)
    return LocalTransport(database_url, timeout=timeout)
