"""Client side: report a shell's own session to session-buddy.

Names load on first use: the hooks and `emit` import only what they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
