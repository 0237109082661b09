"""Client side: report a shell's own session to session-buddy.

Names load on first use: the hooks and `emit` import only what they run.
"""

from __future__ import annotations

from session_buddy.lazy import lazy_names

TYPE_CHECKING = False  # see session_buddy.lazy

if TYPE_CHECKING:
    from session_buddy.client.emitter import SessionEventEmitter
    from session_buddy.client.spool import Spool
    from session_buddy.client.transports import TransportError

__all__ = ["SessionEventEmitter", "Spool", "TransportError"]
_HOMES = {
    "SessionEventEmitter": "session_buddy.client.emitter",
    "Spool": "session_buddy.client.spool",
    "TransportError": "session_buddy.client.transports",
}

__getattr__ = lazy_names(__name__, _HOMES)
