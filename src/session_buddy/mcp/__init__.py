"""MCP side of session-buddy: wire models, the SessionTracker and the server."""

from session_buddy.mcp.event_models import (
    EnvironmentInfo,
    ErrorResponse,
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
    UserInfo,
)
from session_buddy.mcp.session_tracker import SessionTracker

__all__ = [
    "EnvironmentInfo",
    "ErrorResponse",
    "SessionEndEvent",
    "SessionEndResult",
    "SessionStartEvent",
    "SessionStartResult",
    "SessionTracker",
    "UserInfo",
]
