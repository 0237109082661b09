"""Session lifecycle: states, transitions, queries and the stores behind them.

Core takes its own plain inputs (`NewSession`, `SessionEnd`) and knows nothing of the
wire format, MCP, HTTP or the command line.
"""

from session_buddy.core.lifecycle import SessionLifecycleManager
from session_buddy.core.states import SessionStatus
from session_buddy.core.transitions import NewSession, SessionEnd

__all__ = ["NewSession", "SessionEnd", "SessionLifecycleManager", "SessionStatus"]
