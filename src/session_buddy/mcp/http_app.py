"""The HTTP face of the server: /mcp (streamable HTTP), /healthz, /metrics, and the guard
in front of them (Host allow-list, bearer-token gate, request size limit)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session_buddy.mcp.auth import AuthError, TokenAuthority, bearer_token
from session_buddy.mcp.metrics import CONTENT_TYPE
from session_buddy.mcp.service import SessionService

MCP_PATH = "/mcp"
MAX_BODY_BYTES = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
# Protocol messages that carry no session data: a client may send them before it has
# presented a token (clients that pass `token` as a tool argument do exactly that).
OPEN_METHODS = {"initialize", "ping", "tools/list"}
OPEN_TOOLS = {"health_check"}


def allowed_host_patterns(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """Host headers the server answers: loopback, the bound address, and named hosts."""
    patterns = list(LOOPBACK_HOSTS)
    if bind_host not in ("0.0.0.0", "::", "127.0.0.1", "localhost", "::1"):
        patterns.append(f"[{bind_host}]:*" if ":" in bind_host else f"{bind_host}:*")
    for host in extra:
        patterns.append(host if ":" in host.replace("[", "").split("]")[-1] else f"{host}:*")
    return patterns


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith(":*"):
            name = pattern[:-2]
            if host == name or (host.startswith(name + ":") and host[len(name) + 1 :].isdigit()):
                return True
        elif host == pattern:
            return True
    return False


def _json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _unauthorized(message: str) -> Response:
    challenge = (
        f'Bearer realm="session-buddy", error="invalid_token", error_description="{message}"'
    )
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32001, "message": f"unauthorized: {message}"},
    }
    return _json_response(401, body, {"WWW-Authenticate": challenge})


def _missing_token() -> Response:
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32001, "message": "unauthorized: a bearer token is required"},
    }
    return _json_response(401, body, {"WWW-Authenticate": 'Bearer realm="session-buddy"'})


class Guard:
    """Refuses foreign Host headers everywhere, oversized bodies, and, when a secret is
    set, MCP requests whose credentials are missing or invalid (401)."""

    def __init__(self, app: ASGIApp, *, hosts: list[str], authority: TokenAuthority | None) -> None:
        self.app = app
        self.hosts = hosts
        self.authority = authority

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not host_allowed(request.headers.get("host", ""), self.hosts):
            await _json_response(421, {"error": "Invalid Host header"})(scope, receive, send)
            return
        if self.authority is None or not scope["path"].startswith(MCP_PATH):
            await self.app(scope, receive, send)
            return
        header = request.headers.get("authorization")
        if header is not None:
            try:
                self.authority.verify(bearer_token(header))
            except AuthError as exc:
                await _unauthorized(str(exc))(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _json_response(413, {"error": "request body over 1 MiB"})(scope, receive, send)
            return
        refusal = self._refusal_without_header(body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(body), send)

    def _refusal_without_header(self, body: bytes) -> Response | None:
        """No Authorization header: allow the handshake, health_check and tool calls
        that carry a valid `token` argument; refuse the rest."""
        assert self.authority is not None
        if not body:
            return None  # GET/DELETE on the stream endpoint: nothing to read
        try:
            message = json.loads(body)
        except ValueError:
            return None  # let the transport answer with a parse error
        messages = message if isinstance(message, list) else [message]
        for item in messages:
            if not isinstance(item, dict):
                continue
            method = str(item.get("method"))
            if method in OPEN_METHODS or method.startswith("notifications/"):
                continue
            params = _object(item.get("params"))
            if method == "tools/call" and params.get("name") in OPEN_TOOLS:
                continue
            token = (
                _object(params.get("arguments")).get("token") if method == "tools/call" else None
            )
            if not isinstance(token, str) or not token:
                return _missing_token()
            try:
                self.authority.verify(token)
            except AuthError as exc:
                return _unauthorized(str(exc))
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def build_http_app(
    service: SessionService,
    server: MCPServer,
    *,
    bind_host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    stateless: bool = False,
) -> ASGIApp:
    """Starlette app for /mcp, /healthz and /metrics behind the Guard.

    `stateless` answers every request on its own (no MCP session to stick to), for
    several servers behind a load balancer; the default keeps sessions, which is faster.
    """

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def healthz(request: Request) -> Response:
        health = await service.health_check()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    @server.custom_route("/metrics", methods=["GET"])  # type: ignore[untyped-decorator]
    async def metrics(request: Request) -> Response:
        active: float
        try:
            active = await service.manager.active_count()
        except Exception:
            active = float("nan")
        return Response(service.metrics.render(active), media_type=CONTENT_TYPE)

    hosts = allowed_host_patterns(bind_host, allowed_hosts)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=stateless,
        transport_security=security,
        host=bind_host,
    )
    return Guard(app, hosts=hosts, authority=service.authority)
