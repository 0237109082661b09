"""Session lifecycle: states, transitions, queries and the stores behind them.

Core takes its own plain inputs (`NewSession`, `SessionEnd`) and knows nothing of the
wire format, MCP, HTTP or the command line. Its names load on first use, so that a
module of core (the record fields, the states) can be imported without the stores.
"""

from __future__ import annotations

from session_buddy.lazy import lazy_names

TYPE_CHECKING = False  # see session_buddy.lazy
if TYPE_CHECKING:
    from session_buddy.core.lifecycle import SessionLifecycleManager
    from session_buddy.core.states import SessionStatus
    from session_buddy.core.transitions import Actor, NewSession, SessionEnd

__all__ = ["Actor", "NewSession", "SessionEnd", "SessionLifecycleManager", "SessionStatus"]
_HOMES = {
    "SessionLifecycleManager": "session_buddy.core.lifecycle",
    "SessionStatus": "session_buddy.core.states",
    "Actor": "session_buddy.core.transitions",
    "NewSession": "session_buddy.core.transitions",
    "SessionEnd": "session_buddy.core.transitions",
}

__getattr__ = lazy_names(__name__, _HOMES)
