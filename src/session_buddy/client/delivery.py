"""Deliver events now, or spool them and deliver them later, in order."""

from __future__ import annotations

import sys
import threading
from typing import Any

from session_buddy.client.spool import ReplayReport, Spool
from session_buddy.client.transports import Transport, TransportError

SPOOLED_PREFIX = "spooled:"
CREDENTIAL_ERRORS = ("unauthorized", "forbidden")


class Courier:
    def __init__(self, transport: Transport, spool: Spool, *, token: str | None = None) -> None:
        self.transport = transport
        self.spool = spool
        self.token = token
        self.problems: list[str] = []
        self._calls = threading.Lock()  # heartbeats and the end share one connection

    def _call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if self.token:
            arguments = arguments | {"token": self.token}
        with self._calls:
            result = self.transport.call(tool, arguments)
        if result.get("error_code") in CREDENTIAL_ERRORS:
            # Keep the event until the credentials are fixed.
            raise TransportError(str(result.get("error")))
        return result

    def _note(self, problem: str) -> None:
        self.problems.append(problem)
        print(f"session-buddy: {problem}", file=sys.stderr)

    def _in_order(self, record: dict[str, Any]) -> tuple[bool, str | None]:
        """Deliver now unless older events still wait in the spool; otherwise spool it.
        Returns (delivered, session id of a delivered start)."""
        if self.spool.pending() and self.flush().remaining:
            self.spool.append(record)
            return False, None
        try:
            return True, self.deliver(record)
        except TransportError:
            self.spool.append(record)
            return False, None

    def start(self, event: dict[str, Any]) -> str | None:
        """Send a start; the session id, or None if it was spooled or rejected."""
        return self._in_order({"kind": "start", "event": event})[1]

    def end(
        self,
        session_id: str | None,
        event: dict[str, Any],
        *,
        start: dict[str, Any] | None = None,
        start_event_id: str | None = None,
    ) -> bool:
        """Send an end for a session (or for a start that is still spooled)."""
        record = {
            "kind": "end",
            "session_id": session_id,
            "start": start,
            "start_event_id": start_event_id or (start or {}).get("event_id"),
            "event": event,
        }
        return self._in_order(record)[0]

    def end_external(self, external_id: str, event: dict[str, Any]) -> bool:
        record = {"kind": "end_external", "external_id": external_id, "event": event}
        return self._in_order(record)[0]

    def heartbeat(self, session_id: str, timestamp: str) -> bool:
        """Best effort: a missed heartbeat is not worth spooling."""
        try:
            self._call(
                "track_session_heartbeat", {"session_id": session_id, "timestamp": timestamp}
            )
        except TransportError:
            return False
        return True

    def flush(self) -> ReplayReport:
        return self.spool.replay(self._deliver_spooled)

    def _deliver_spooled(self, record: dict[str, Any]) -> bool:
        try:
            self.deliver(record, spooled=True)
        except TransportError:
            return False
        return True

    def deliver(self, record: dict[str, Any], *, spooled: bool = False) -> str | None:
        """Deliver one record (what the server rejects for good is dropped, with a note);
        the session id for a start. Raises TransportError when unreachable.

        A start replayed from the spool has its session id remembered, for the
        `spooled:<event id>` placeholders handed out while it waited."""
        kind = record.get("kind")
        if kind == "start":
            session_id = self._deliver_start(record["event"])
            if spooled and session_id is not None:
                self.spool.remember(record["event"]["event_id"], session_id)
            return session_id
        if kind == "end":
            self._deliver_end(record)
        elif kind == "end_external":
            self._deliver_end_external(record)
        else:
            self._note(f"dropping a spool record of unknown kind {kind!r}")
        return None

    def _deliver_start(self, event: dict[str, Any]) -> str | None:
        result = self._call("track_session_start", event)
        session_id = result.get("session_id")
        if result.get("status") != "tracked" or not isinstance(session_id, str):
            self._note(f"start {event.get('event_id')} rejected: {result.get('error')}")
            return None
        return session_id

    def _deliver_end(self, record: dict[str, Any]) -> None:
        session_id = record.get("session_id")
        start_event_id = record.get("start_event_id")
        if session_id is None and start_event_id:
            session_id = self.spool.known_session_id(start_event_id)
        if session_id is None and record.get("start"):
            session_id = self._deliver_start(record["start"])  # idempotent by event id
        if session_id is None:
            self._note(f"dropping an end whose start {start_event_id} never arrived")
            return
        result = self._call("track_session_end", record["event"] | {"session_id": session_id})
        if result.get("status") == "error":
            self._note(f"end of {session_id} rejected: {result.get('error')}")

    def _deliver_end_external(self, record: dict[str, Any]) -> None:
        found = self._call(
            "list_sessions", {"external_id": record["external_id"], "status": "active", "limit": 1}
        )
        sessions = found.get("sessions") or []
        if sessions:
            event = record["event"] | {"session_id": sessions[0]["session_id"]}
            self._call("track_session_end", event)
