"""The MCP server: seven tools on the official SDK, served over stdio or streamable HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from session_buddy import __version__
from session_buddy.mcp.event_models import SessionEndResult, SessionStartResult
from session_buddy.mcp.results import (
    HealthResult,
    HeartbeatResult,
    SessionPage,
    SessionRecord,
    SessionStats,
)
from session_buddy.mcp.service import Headers, SessionService

INSTRUCTIONS = (
    "session-buddy tracks shell and agent sessions. Call track_session_start when a shell "
    "starts (keep the returned session_id), track_session_heartbeat while it runs, and "
    "track_session_end when it exits (metadata.exit_code / exit_reason tell a crash). "
    "Query with get_session, list_sessions and session_stats."
)


def _arg(description: str, json_type: str) -> Any:
    """A loosely typed tool argument: validated by the wire models, documented here."""
    return Field(default=None, description=description, json_schema_extra={"type": json_type})


Token = Annotated[Any, _arg("Bearer token (HS256 JWT), when the server requires one", "string")]


def _result(content: dict[str, Any]) -> CallToolResult:
    """Structured content plus the same JSON as text, for clients that read only text."""
    text = json.dumps(content, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content)


def _headers(ctx: Context | None) -> Headers:
    if ctx is None:
        return None
    try:
        return ctx.headers
    except ValueError:  # called outside a request
        return None


def build_mcp_server(service: SessionService) -> MCPServer:
    """An MCPServer whose tools answer through `service`."""
    server = MCPServer(
        "session-buddy",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )
    latency = service.metrics.tool_latency

    async def answer(name: str, call: Awaitable[dict[str, Any]]) -> CallToolResult:
        """Await the service call as the tool's result, timing it for the metrics."""
        began = time.perf_counter()
        try:
            return _result(await call)
        finally:
            latency.labels(name).observe(time.perf_counter() - began)

    write = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
    read = ToolAnnotations(read_only_hint=True)

    @server.tool(annotations=write)
    async def track_session_start(
        event_version: Annotated[Any, _arg("Wire format version: '1.0'", "string")],
        event_id: Annotated[Any, _arg("Unique event id (UUID); retries reuse it", "string")],
        component_name: Annotated[Any, _arg("Component, ^[a-zA-Z0-9_-]+$", "string")],
        shell_type: Annotated[Any, _arg("Shell class, e.g. 'IPythonShell'", "string")],
        timestamp: Annotated[Any, _arg("ISO 8601 start time", "string")],
        pid: Annotated[Any, _arg("Process id, 1..4194304", "integer")],
        user: Annotated[Any, _arg("{username, home}", "object")],
        hostname: Annotated[Any, _arg("Host name", "string")],
        environment: Annotated[Any, _arg("{python_version, platform, cwd}", "object")],
        event_type: Annotated[Any, _arg("'session_start' (default)", "string")] = None,
        metadata: Annotated[Any, _arg("Anything else (JSON object, <= 64 KiB)", "object")] = None,
        token: Token = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SessionStartResult]:
        """Record that a shell or agent session started; returns its session_id."""
        arguments = {
            "event_version": event_version,
            "event_id": event_id,
            "event_type": event_type,
            "component_name": component_name,
            "shell_type": shell_type,
            "timestamp": timestamp,
            "pid": pid,
            "user": user,
            "hostname": hostname,
            "environment": environment,
            "metadata": metadata,
        }
        return await answer(
            "track_session_start", service.track_session_start(arguments, token, _headers(ctx))
        )

    @server.tool(annotations=write)
    async def track_session_end(
        session_id: Annotated[Any, _arg("The session_id track_session_start returned", "string")],
        timestamp: Annotated[Any, _arg("ISO 8601 end time", "string")],
        event_type: Annotated[Any, _arg("'session_end' (default)", "string")] = None,
        metadata: Annotated[
            Any, _arg("exit_code, exit_reason and anything else (JSON object)", "object")
        ] = None,
        token: Token = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SessionEndResult]:
        """Record that a session ended; a non-zero exit_code or an exit_reason such as
        crash/error/exception/signal/killed marks it crashed."""
        arguments = {
            "session_id": session_id,
            "timestamp": timestamp,
            "event_type": event_type,
            "metadata": metadata,
        }
        return await answer(
            "track_session_end", service.track_session_end(arguments, token, _headers(ctx))
        )

    @server.tool(annotations=write)
    async def track_session_heartbeat(
        session_id: Annotated[Any, _arg("The session's id", "string")],
        timestamp: Annotated[Any, _arg("ISO 8601 time; default: now", "string")] = None,
        token: Token = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, HeartbeatResult]:
        """Tell session-buddy a session is still alive (keeps it from being abandoned)."""
        return await answer(
            "track_session_heartbeat",
            service.track_session_heartbeat(session_id, timestamp, token, _headers(ctx)),
        )

    @server.tool(annotations=read)
    async def get_session(
        session_id: Annotated[Any, _arg("The session's id", "string")],
        token: Token = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SessionRecord]:
        """One session record, or status='not_found'."""
        return await answer("get_session", service.get_session(session_id, token, _headers(ctx)))

    @server.tool(annotations=read)
    async def list_sessions(
        status: Annotated[Any, _arg("active, ended, crashed or abandoned", "string")] = None,
        component_name: Annotated[Any, _arg("Only this component", "string")] = None,
        shell_type: Annotated[Any, _arg("Only this shell type", "string")] = None,
        hostname: Annotated[Any, _arg("Only this host", "string")] = None,
        username: Annotated[Any, _arg("Only this user", "string")] = None,
        external_id: Annotated[Any, _arg("Only sessions with this external id", "string")] = None,
        started_after: Annotated[Any, _arg("Started at or after (ISO 8601)", "string")] = None,
        started_before: Annotated[Any, _arg("Started before (ISO 8601)", "string")] = None,
        limit: Annotated[Any, _arg("Page size, 1..500 (default 50)", "integer")] = None,
        cursor: Annotated[Any, _arg("next_cursor of the previous page", "string")] = None,
        token: Token = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SessionPage]:
        """Sessions, newest first, filtered, one page at a time."""
        filters = {
            "status": status,
            "component_name": component_name,
            "shell_type": shell_type,
            "hostname": hostname,
            "username": username,
            "external_id": external_id,
            "started_after": started_after,
            "started_before": started_before,
        }
        return await answer(
            "list_sessions", service.list_sessions(filters, limit, cursor, token, _headers(ctx))
        )

    @server.tool(annotations=read)
    async def session_stats(
        group_by: Annotated[
            Any, _arg("component_name (default), shell_type, hostname or username", "string")
        ] = None,
        since: Annotated[Any, _arg("Sessions started at or after (ISO 8601)", "string")] = None,
        until: Annotated[Any, _arg("Sessions started before (ISO 8601)", "string")] = None,
        token: Token = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SessionStats]:
        """Per group: counts per state, mean/p50/p95 duration of clean exits, crash and
        abandon rates."""
        return await answer(
            "session_stats", service.session_stats(group_by, since, until, token, _headers(ctx))
        )

    @server.tool(annotations=read)
    async def health_check(token: Token = None) -> Annotated[CallToolResult, HealthResult]:
        """Is the server up and its database reachable? Needs no token."""
        return await answer("health_check", service.health_check())

    return server
