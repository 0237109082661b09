"""Session lifecycle: the manager, the states, and the stores behind them."""

from session_buddy.core.lifecycle import SessionLifecycleManager
from session_buddy.core.states import SessionStatus

__all__ = ["SessionLifecycleManager", "SessionStatus"]
