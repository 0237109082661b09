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
    """The structured content of a tools/call reply. A reply that says nothing of the
    event (no result, no structured content and no error) is a TransportError: it may
    not have been taken, so it is tried again."""
    error = reply.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise TransportError(f"server error: {message}")
    result = reply.get("result")
    result = result if isinstance(result, dict) else {}
    content = result.get("structuredContent")
    if isinstance(content, dict) and isinstance(content.get("status"), str):
        return content
    if result.get("isError") is True:  # refused by the protocol layer, with its reason
        parts = result.get("content")
        listed: list[Any] = parts if isinstance(parts, list) else []
        text = " ".join(str(c.get("text", "")) for c in listed if isinstance(c, dict))
        return {"status": "error", "error": text or "the server refused the call"}
    raise TransportError("the server's reply does not say what became of the event")
