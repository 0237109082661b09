"""Connection bounds uvicorn lacks: its HTTP/1.1 protocol, with a deadline for reading
each request (head and body) and a cap on open connections.

uvicorn closes a connection that stays idle after a response (keep-alive timeout), but
a connection that never sends a request, or sends it a byte at a time (slowloris),
stays open forever. Here every request must arrive whole within READ_TIMEOUT seconds of
its first byte (or of the connection, for the first), and a connection past
MAX_CONNECTIONS is closed at once.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

READ_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5.0
MAX_CONNECTIONS = 1000
MAX_HEADER_BYTES = 64 * 1024
_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


class BoundedH11Protocol(H11Protocol):
    read_timeout = READ_TIMEOUT
    max_connections = MAX_CONNECTIONS
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection begins
        super().data_received(data)
        if self.conn.their_state in _RECEIVED:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
