"""Connection bounds uvicorn lacks: its HTTP/1.1 protocol, with a deadline for reading
each request (head and body), a cap on open connections that no client can use up
against another, and malformed requests refused in the one JSON shape.

uvicorn closes a connection that stays idle after a response (keep-alive timeout), but
a connection that never sends a request, sends it a byte at a time (slowloris), or had
its request head pipelined behind another one and never sends the body, stays open
forever. Here every request cycle must arrive whole within READ_TIMEOUT seconds: from
its first byte, or from the end of the previous response (a pipelined request).

When MAX_CONNECTIONS are open, a new connection does not simply go away: the server
closes the connection that matters least to make room, never one whose request is being
answered. A connection ranks by the credential of its last request (none < read-only
token < write token) and, among equals, the one quiet longest goes first; so idle and
slow connections without a token can never crowd out a client that has one.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from session_buddy.app.auth import CLAIMS_STATE_KEY, credential_rank

READ_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5.0
MAX_CONNECTIONS = 1000
MAX_HEADER_BYTES = 64 * 1024
_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
HEAD_TOO_LARGE = "request head too large"


class BoundedH11Protocol(H11Protocol):
    read_timeout = READ_TIMEOUT
    max_connections = MAX_CONNECTIONS
    _read_deadline: asyncio.TimerHandle | None = None
    _cycle_begun = False  # the current request cycle's first byte has arrived
    _head = b""  # the current request's head as it arrives, up to MAX_HEADER_BYTES + 4
    rank = 0
    last_active = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.last_active = time.monotonic()
        if len(self.connections) > self.max_connections and not self._make_room():
            transport.close()
            return
        self._arm()

    def _make_room(self) -> bool:
        """Close the connection that matters least, if one is not being answered."""
        others = [c for c in self.connections if isinstance(c, BoundedH11Protocol) and c != self]
        idle = [c for c in others if not c.answering and not c.transport.is_closing()]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.rank, c.last_active))
        victim.transport.close()
        return True

    @property
    def answering(self) -> bool:
        """Has a whole request of this connection been received and not yet answered?"""
        received = self.conn.their_state in _RECEIVED
        return received and self.cycle is not None and not self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if not self._cycle_begun:  # the deadline counts from a request's first byte
            self._cycle_begun = True
            self._head = b""
            self._arm()
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self.send_400_response(HEAD_TOO_LARGE)
            return
        super().data_received(data)
        if self.conn.their_state in _RECEIVED:
            self._disarm()

    def _head_too_large(self, data: bytes) -> bool:
        """Is the head of the request being received over MAX_HEADER_BYTES? (h11 bounds
        only a head that arrives in pieces.)"""
        if b"\r\n\r\n" in self._head:
            return False
        self._head = (self._head + data)[: MAX_HEADER_BYTES + 4]
        end = self._head.find(b"\r\n\r\n")
        return (end if end >= 0 else len(self._head)) > MAX_HEADER_BYTES

    def on_response_complete(self) -> None:
        self.last_active = time.monotonic()
        if self.scope is not None:
            state: Any = self.scope.get("state") or {}
            self.rank = credential_rank(state.get(CLAIMS_STATE_KEY))
        self._cycle_begun = False
        super().on_response_complete()  # may start a pipelined request at once
        if not self.transport.is_closing() and self.conn.their_state not in _RECEIVED:
            self._arm()  # the next request: pipelined, kept alive, or never sent

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (malformed, a head over MAX_HEADER_BYTES): refused
        in the one JSON shape, then the connection closes."""
        status, code, message = 400, "invalid_request", f"malformed HTTP request ({msg})"
        if msg == HEAD_TOO_LARGE:
            status, code = 431, "headers_too_large"
            message = f"request head over {MAX_HEADER_BYTES // 1024} KiB"
        body = json.dumps({"error": message, "error_code": code}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(h11.Response(status_code=status, headers=headers))
            output = (output or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # a response had begun: nothing more can be said
            output = b""
        self.transport.write(output)
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
