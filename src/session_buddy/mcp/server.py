"""The MCP face: the tool table published on the official SDK's MCPServer."""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from session_buddy import __version__
from session_buddy.app.auth import CLAIMS_STATE_KEY, READ_SCOPE
from session_buddy.app.service import SessionService
from session_buddy.app.tools import TOKEN, TOOLS, Argument, Tool, call_tool, unknown_arguments

INSTRUCTIONS = (
    "session-buddy tracks shell and agent sessions. Call track_session_start when a shell "
    "starts (keep the returned session_id), track_session_heartbeat while it runs, and "
    "track_session_end when it exits (metadata.exit_code / exit_reason tell a crash). "
    "Query with get_session, list_sessions and session_stats."
)


def _result(content: dict[str, Any]) -> CallToolResult:
    """Structured content plus the same JSON as text, for clients that read only text."""
    text = json.dumps(content, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content)


def _verified_claims(ctx: Context) -> dict[str, Any] | None:
    """Claims of a bearer header the HTTP layer already verified (none over stdio)."""
    try:
        request = ctx.request_context.request
    except ValueError:  # called outside a request
        return None
    state = getattr(request, "scope", {}).get("state") or {}
    claims = state.get(CLAIMS_STATE_KEY)
    return claims if isinstance(claims, dict) else None


def _parameter(argument: Argument) -> inspect.Parameter:
    """A loosely typed keyword argument: the schema documents it, the tool validates it."""
    field = Field(
        default=None,
        description=argument.description,
        json_schema_extra={"type": argument.json_type},
    )
    return inspect.Parameter(
        argument.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Any, field]
    )


def _tool_function(service: SessionService, tool: Tool) -> Any:
    """A function whose signature the SDK turns into the tool's input and output schema."""

    async def run(ctx: Context, **arguments: Any) -> CallToolResult:
        return _result(await call_tool(service, tool.name, arguments, claims=_verified_claims(ctx)))

    parameters = [_parameter(argument) for argument in (*tool.arguments, TOKEN)]
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    returns = Annotated[CallToolResult, tool.output]
    run.__signature__ = inspect.Signature([*parameters, context], return_annotation=returns)  # type: ignore[attr-defined]
    run.__annotations__ = {"ctx": Context, "return": returns}
    run.__name__ = tool.name
    return run


class SessionBuddyServer(MCPServer):
    """MCPServer, but a call with arguments a tool does not take is refused, naming
    them, as a normal error result (the SDK would drop them silently)."""

    def __init__(self, service: SessionService) -> None:
        super().__init__(
            "session-buddy", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
        )
        self.service = service

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> Any:
        tool = TOOLS.get(name)
        if tool is not None and unknown_arguments(tool, arguments):
            claims = _verified_claims(context) if context else None
            return _result(await call_tool(self.service, name, arguments, claims=claims))
        return await super().call_tool(name, arguments, context)


def build_mcp_server(service: SessionService) -> MCPServer:
    """An MCPServer whose tools answer through `service`."""
    server = SessionBuddyServer(service)
    for tool in TOOLS.values():
        read_only = tool.scope in (None, READ_SCOPE)
        annotations = ToolAnnotations(
            read_only_hint=read_only,
            destructive_hint=None if read_only else False,
            idempotent_hint=None if read_only else True,
        )
        server.add_tool(
            _tool_function(service, tool),
            name=tool.name,
            description=tool.description,
            annotations=annotations,
        )
    return server
