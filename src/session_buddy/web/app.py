"""The HTTP application: /mcp (streamable HTTP), /healthz, /metrics, the dashboard, the
Claude Code hook and the OTLP receiver (/v1/logs, /v1/metrics)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from session_buddy.app.auth import CLAIMS_STATE_KEY, READ_SCOPE, AuthError, Caller, bearer_token
from session_buddy.app.metrics import CONTENT_TYPE
from session_buddy.app.service import SessionService
from session_buddy.web.dashboard import register_dashboard
from session_buddy.web.hooks import CLAUDE_HOOK_PATH, answer_claude_hook
from session_buddy.web.mcp_sessions import FairSessions
from session_buddy.web.middleware import (
    MAX_BODY_BYTES,
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    CleanRequestMiddleware,
    ForwardedPrefixMiddleware,
    RefusalShapeMiddleware,
    TrustedHostMiddleware,
    allowed_host_names,
    auth_refusal,
    named_origins,
)
from session_buddy.web.otlp import OTLP_PATHS, Receiver

MCP_PATH = "/mcp"
# Stateful MCP sessions: at most this many, each closed after this long without a request.
MAX_MCP_SESSIONS = 256
MCP_SESSION_IDLE_SECONDS = 600.0


class SessionsByCredential:
    """/mcp with a secret set: a caller whose bearer header was verified keeps an MCP
    session (bounded in number and idle time); a caller without one (a `token` argument,
    or none) is served statelessly, so it can make the server hold nothing and can never
    use up the sessions of callers with a token. Without a secret, every caller keeps a
    bounded session."""

    def __init__(self, stateful: Starlette, stateless: Starlette | None) -> None:
        self.stateful = stateful
        self.stateless = stateless

        @contextlib.asynccontextmanager
        async def both(app: Starlette) -> AsyncIterator[None]:
            async with contextlib.AsyncExitStack() as stack:
                for served in (stateful, stateless):
                    if served is not None:
                        await stack.enter_async_context(served.router.lifespan_context(served))
                yield

        self._lifespan = Starlette(lifespan=both)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        verified = CLAIMS_STATE_KEY in (scope.get("state") or {})
        app = self.stateless if self.stateless is not None and not verified else self.stateful
        await app(scope, receive, send)


def build_http_app(
    service: SessionService,
    server: MCPServer,
    *,
    bind_host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    stateless: bool = False,
    root_path: str = "",
    trusted_proxies: Iterable[str] = (),
) -> ASGIApp:
    """The routes behind the middlewares (outermost first): the sub-path (`root_path`,
    or the X-Forwarded-Prefix of a trusted proxy), trusted host, body limit, bearer auth
    when a secret is set.

    `stateless` answers every request on its own (no MCP session to stick to), for
    several servers behind a load balancer; the default keeps sessions, which is faster.
    """

    registry = service.metrics
    if registry is None:
        raise ValueError("the HTTP app serves /metrics: give the service a SessionMetrics")

    register_dashboard(server, service)

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def healthz(request: Request) -> Response:
        health = await service.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    @server.custom_route(CLAUDE_HOOK_PATH, methods=["POST"])  # type: ignore[untyped-decorator]
    async def claude_code_hook(request: Request) -> Response:
        return await answer_claude_hook(service, request)

    receiver = Receiver(service)
    for path in OTLP_PATHS:
        server.custom_route(path, methods=["POST"])(receiver.__call__)

    @server.custom_route("/metrics", methods=["GET"])  # type: ignore[untyped-decorator]
    async def metrics(request: Request) -> Response:
        try:  # with a secret set, a sessions:read bearer token
            service.authorize(
                Caller(bearer_token(request.headers.get("authorization"))), READ_SCOPE
            )
        except AuthError as exc:
            return auth_refusal(exc)
        active: float
        try:
            active = await service.manager.active_count()
        except Exception:
            active = float("nan")
        return Response(registry.render(active), media_type=CONTENT_TYPE)

    def mcp_app(stateless_http: bool) -> Starlette:
        return server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=True,
            stateless_http=stateless_http,
            max_request_body_size=MAX_BODY_BYTES,
            max_sessions=MAX_MCP_SESSIONS,
            session_idle_timeout=MCP_SESSION_IDLE_SECONDS,
            # Host and Origin are checked by TrustedHostMiddleware, for every path alike.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            host=bind_host,
        )

    app: ASGIApp = mcp_app(stateless)
    secret_set = service.authority is not None
    if secret_set and not stateless:
        app = SessionsByCredential(mcp_app(False), mcp_app(True))
    if not stateless:
        app = FairSessions(
            app,
            limit=MAX_MCP_SESSIONS,
            idle_seconds=MCP_SESSION_IDLE_SECONDS,
            secret_set=secret_set,
        )
    if service.authority is not None:
        app = BearerAuthMiddleware(app, authority=service.authority, path=MCP_PATH)
    app = CleanRequestMiddleware(BodyLimitMiddleware(RefusalShapeMiddleware(app)))
    allowed = tuple(allowed_hosts)
    app = TrustedHostMiddleware(
        app, hosts=allowed_host_names(bind_host, allowed), origins=named_origins(allowed)
    )
    return ForwardedPrefixMiddleware(app, prefix=root_path, trusted=trusted_proxies)
