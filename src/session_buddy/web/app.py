"""The HTTP application: /mcp (streamable HTTP), /healthz and /metrics."""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from session_buddy.app.metrics import CONTENT_TYPE
from session_buddy.app.service import SessionService
from session_buddy.web.hooks import CLAUDE_HOOK_PATH, answer_claude_hook
from session_buddy.web.middleware import (
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    TrustedHostMiddleware,
    allowed_host_names,
)

MCP_PATH = "/mcp"


def build_http_app(
    service: SessionService,
    server: MCPServer,
    *,
    bind_host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    stateless: bool = False,
) -> ASGIApp:
    """The routes behind the middlewares (outermost first): trusted host, body limit,
    bearer auth when a secret is set.

    `stateless` answers every request on its own (no MCP session to stick to), for
    several servers behind a load balancer; the default keeps sessions, which is faster.
    """

    registry = service.metrics
    if registry is None:
        raise ValueError("the HTTP app serves /metrics: give the service a SessionMetrics")

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def healthz(request: Request) -> Response:
        health = await service.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    @server.custom_route(CLAUDE_HOOK_PATH, methods=["POST"])  # type: ignore[untyped-decorator]
    async def claude_code_hook(request: Request) -> Response:
        return await answer_claude_hook(service, request)

    @server.custom_route("/metrics", methods=["GET"])  # type: ignore[untyped-decorator]
    async def metrics(request: Request) -> Response:
        active: float
        try:
            active = await service.manager.active_count()
        except Exception:
            active = float("nan")
        return Response(registry.render(active), media_type=CONTENT_TYPE)

    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=stateless,
        # Host and Origin are checked by TrustedHostMiddleware, for every path alike.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host=bind_host,
    )
    if service.authority is not None:
        app = BearerAuthMiddleware(app, authority=service.authority, path=MCP_PATH)
    app = BodyLimitMiddleware(app)
    return TrustedHostMiddleware(app, hosts=allowed_host_names(bind_host, allowed_hosts))
