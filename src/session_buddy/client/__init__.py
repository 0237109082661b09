"""Client side: report a shell's own session to session-buddy."""

from session_buddy.client.emitter import SessionEventEmitter
from session_buddy.client.spool import Spool
from session_buddy.client.transports import TransportError

__all__ = ["SessionEventEmitter", "Spool", "TransportError"]
