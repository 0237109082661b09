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
from session_buddy.app.tools import TOKEN, TOOLS, Argument, Tool, call_tool

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


def _schema_function(tool: Tool) -> Any:
    """A function whose signature the SDK turns into the tool's input and output schema.
    Calls never reach it: SessionBuddyServer.call_tool runs the tool."""

    async def run(**arguments: Any) -> CallToolResult:
        raise NotImplementedError(f"{tool.name} runs through SessionBuddyServer.call_tool")

    parameters = [_parameter(argument) for argument in (*tool.arguments, TOKEN)]
    returns = Annotated[CallToolResult, tool.output]
    run.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    run.__annotations__ = {"return": returns}
    run.__name__ = tool.name
    return run


def _decoded_json_texts(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments with JSON objects and arrays sent as text decoded where the tool takes
    an object or an array (some clients send every object as a JSON string); a string
    argument stays a string, "null" and "true" included."""
    structured = {a.name for a in tool.arguments if a.json_type in ("object", "array")}
    decoded = dict(arguments)
    for name, value in arguments.items():
        if name not in structured or not isinstance(value, str):
            continue
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                decoded[name] = json.loads(text)
            except (ValueError, RecursionError):
                continue
    return decoded


class SessionBuddyServer(MCPServer):
    """MCPServer that runs its own tools straight through `call_tool`: the arguments are
    checked there (a call with arguments a tool does not take is refused, naming them,
    where the SDK would drop them silently), so the SDK's per-call argument model and
    output re-validation are skipped."""

    def __init__(self, service: SessionService) -> None:
        super().__init__(
            "session-buddy", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
        )
        self.service = service

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> Any:
        if name not in TOOLS:
            return await super().call_tool(name, arguments, context)
        claims = _verified_claims(context) if context else None
        arguments = _decoded_json_texts(TOOLS[name], arguments)
        return _result(await call_tool(self.service, name, arguments, claims=claims))


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
            _schema_function(tool),
            name=tool.name,
            description=tool.description,
            annotations=annotations,
        )
    return server
