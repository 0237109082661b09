"""MCP side of session-buddy: the wire models, the seed's SessionTracker, the server.

The wire models load eagerly and alone; the tracker (which needs the store) loads on
first use, so `import session_buddy.mcp.event_models` stays free of I/O libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from session_buddy.lazy import lazy_names
from session_buddy.mcp.event_models import (
    EnvironmentInfo,
    ErrorResponse,
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
    UserInfo,
)

if TYPE_CHECKING:
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

__getattr__ = lazy_names(__name__, {"SessionTracker": "session_buddy.mcp.session_tracker"})
