"""The few JSON-RPC messages of MCP a shell needs, shared by the HTTP and stdio clients.

Small stdlib clients: a shell should not pay for importing a full MCP SDK.
"""

from __future__ import annotations

from typing import Any

from session_buddy import __version__
from session_buddy.client.transports.base import TransportError

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "session-buddy-emitter", "version": __version__}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def initialize_params() -> dict[str, Any]:
    return {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}


def tool_result(reply: dict[str, Any]) -> dict[str, Any]:
    """The structured content of a tools/call reply."""
    if "error" in reply:
        raise TransportError(f"server error: {reply['error'].get('message', reply['error'])}")
    result = reply.get("result") or {}
    content = result.get("structuredContent")
    if isinstance(content, dict):
        return content
    text = " ".join(c.get("text", "") for c in result.get("content", []) if isinstance(c, dict))
    return {"status": "error", "error": text or "the server sent no result"}
