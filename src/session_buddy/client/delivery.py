"""Deliver events now, or spool them for their own destination and deliver them later,
in order.

An event goes straight to its destination unless older records for that destination
still wait; then it queues behind them and a bounded slice of the queue is delivered.
What the server refuses for good is set aside with its reason; credential problems are
said loudly and the event is kept.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from session_buddy.client.hook_delivery import Delivery, deliver
from session_buddy.client.outcomes import Attempt, Outcome, attempt
from session_buddy.client.spool import (
    QUARANTINED,
    REJECTED,
    Destination,
    Spool,
    SpoolError,
)
from session_buddy.client.transports import Transport
from session_buddy.config import Settings, normalized_server_url

SPOOLED_PREFIX = "spooled:"
SLICE_SECONDS = 0.3  # what an emit or a hook spends on an older backlog
PAGE = 64
LOCAL_SCHEMES = ("sqlite:", "postgresql:", "postgres:")


def token_identity(token: str | None) -> str:
    """Whose token this is (its subject, unverified) and a fingerprint; never the token."""
    if not token:
        return ""
    import base64  # here: a shell that sends no token never loads these
    import hashlib

    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12]
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        subject = str(claims.get("sub", "?"))[:100]
    except (IndexError, ValueError, AttributeError):
        subject = "unreadable token"
    return f"{subject} ({fingerprint})"


def destination_url(server_url: str | None, database_url: str | None) -> str:
    """The destination an event is for, spelled so that any process means the same
    place: the server URL, else the database URL (a relative SQLite path made absolute,
    the default store resolved)."""
    if server_url:
        return normalized_server_url(server_url)
    url = database_url or Settings.from_environment().database_url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
        url = prefix + str(Path(url[len(prefix) :]).absolute())
    return url


def is_local(url: str) -> bool:
    return url.startswith(LOCAL_SCHEMES)


class Sent(NamedTuple):
    """What became of one event: delivered, spooled (pending), or refused."""

    outcome: Outcome
    result: dict[str, Any]  # the server's answer ({} when there was none)
    spooled: bool = False
    session_id: str | None = None
    reason: str = ""


class FlushReport:
    """What one flush of a destination did; filled in as it goes. (Plain classes and
    NamedTuples here, not dataclasses: a shell imports the client at every launch.)"""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.delivered = self.rejected = self.quarantined = self.remaining = 0
        self.stopped_by: Outcome | None = None  # transient or credentials: the rest waits
        self.reason = ""
        self.busy = False  # another flush is delivering this destination
        self.unremoved = 0  # delivered, but the spool could not delete them (a full disk)
        self.attempts: dict[int, Attempt] = {}


class Courier:
    def __init__(
        self,
        transport: Transport,
        spool: Spool,
        destination: Destination,
        *,
        token: str | None = None,
    ) -> None:
        self.transport = transport
        self.spool = spool
        self.destination = destination
        self.token = token
        self.problems: list[str] = []
        self._credentials_said = False
        # Session ids of starts this flush delivered in the page not yet committed.
        self._started: dict[str, str] = {}
        self._calls = threading.Lock()  # heartbeats and the end share one connection

    def _note(self, problem: str) -> None:
        self.problems.append(problem)
        print(f"session-buddy: {problem}", file=sys.stderr)

    def _credentials(self, reason: str) -> None:
        """Say a credential problem loudly, once per courier."""
        if not self._credentials_said:
            self._credentials_said = True
            self._note(f"credentials refused by {self.destination.url}: {reason}")

    def _call(self, tool: str, arguments: dict[str, Any]) -> Attempt:
        if self.token:
            arguments = arguments | {"token": self.token}
        with self._calls:
            return attempt(self.transport, tool, arguments)

    # -- sending -----------------------------------------------------------------------

    def start(self, event: dict[str, Any]) -> Sent:
        return self._send({"kind": "start", "event": event})

    def end(
        self,
        session_id: str | None,
        event: dict[str, Any],
        *,
        start: dict[str, Any] | None = None,
        start_event_id: str | None = None,
    ) -> Sent:
        """Send an end for a session (or for a start that is still spooled)."""
        record = {
            "kind": "end",
            "session_id": session_id,
            "start": start,
            "start_event_id": start_event_id or (start or {}).get("event_id"),
            "event": event,
        }
        return self._send(record)

    def hook(self, payload: dict[str, Any], tried: Attempt | None = None) -> Sent:
        """A stamped Claude Code hook payload, kept in order with this destination's
        other records; `tried`: what delivering it just now gave (it is not sent again)."""
        return self._send({"kind": "hook", "payload": payload}, tried)

    def heartbeat(self, session_id: str, timestamp: str) -> bool:
        """Best effort: a missed heartbeat is not worth spooling."""
        beat = self.beat({"session_id": session_id, "timestamp": timestamp})
        return beat.outcome is Outcome.DELIVERED

    def beat(self, arguments: dict[str, Any]) -> Attempt:
        """A heartbeat with any of its arguments (activity, external_id, ...), not spooled."""
        tried = self._call("track_session_heartbeat", arguments)
        if tried.outcome is Outcome.CREDENTIALS:
            self._credentials(tried.reason)
        return tried

    def _waiting(self) -> int:
        """Records of this destination still waiting; 0 when the spool cannot be read
        (a direct delivery never depends on the spool)."""
        try:
            return self.spool.count(self.destination.url)
        except SpoolError:
            return 0

    def _send(self, record: dict[str, Any], tried: Attempt | None = None) -> Sent:
        if tried is None and self._waiting():
            try:
                record_id = self._enqueue(record, "waiting behind older records")
            except SpoolError:
                pass  # the spool cannot keep order: better delivered out of it than lost
            else:
                return self._send_behind(record_id, record)
        tried = tried or self._deliver(record)
        sent = self._sent(record, tried)
        if tried.outcome is Outcome.DELIVERED:
            return sent
        if tried.outcome is Outcome.REFUSED:
            self._note(f"{_describe(record)} refused: {tried.reason}")
        elif tried.outcome is Outcome.CREDENTIALS:
            self._credentials(tried.reason)
        try:
            self._enqueue(record, tried.reason, REJECTED if sent.outcome is Outcome.REFUSED else "")
        except SpoolError as exc:
            self._note(f"{_describe(record)} is lost: {exc}")
        else:
            return sent._replace(spooled=tried.outcome is not Outcome.REFUSED)
        return sent

    def _send_behind(self, record_id: int, record: dict[str, Any]) -> Sent:
        """After queueing behind older records: deliver a bounded slice of the queue."""
        report = self.flush(budget=SLICE_SECONDS)
        tried = report.attempts.get(record_id)
        if tried is None or tried.outcome not in (Outcome.DELIVERED, Outcome.REFUSED):
            outcome = report.stopped_by or Outcome.TRANSIENT
            return Sent(outcome, {}, spooled=True, reason=report.reason or "older records wait")
        return self._sent(record, tried)

    def _enqueue(self, record: dict[str, Any], reason: str, state: str = "") -> int:
        """Put a record in the spool: pending, or set aside in `state`."""
        record_id = self.spool.enqueue(self.destination, record, reason)
        if state:
            self.spool.set_aside(record_id, state, reason)
        return record_id

    def _sent(self, record: dict[str, Any], tried: Attempt) -> Sent:
        session_id = self._session_id(record, tried)
        return Sent(tried.outcome, tried.result, session_id=session_id, reason=tried.reason)

    @staticmethod
    def _session_id(record: dict[str, Any], tried: Attempt) -> str | None:
        session_id = tried.result.get("session_id")
        if record["kind"] == "start" and tried.outcome is Outcome.DELIVERED:
            return session_id if isinstance(session_id, str) else None
        return None

    # -- delivering one record ---------------------------------------------------------

    def _deliver(self, record: dict[str, Any]) -> Attempt:
        kind = record["kind"]
        if kind == "hook":
            url, payload, within = self.destination.url, record["payload"], self.transport.timeout
            return hook_attempt(deliver(url, payload, token=self.token, within=within))
        if kind == "start":
            return self._call("track_session_start", record["event"])
        if kind == "end":
            return self._deliver_end(record)
        return self._deliver_end_external(record)

    def _deliver_end(self, record: dict[str, Any]) -> Attempt:
        session_id = record.get("session_id")
        start_event_id = record.get("start_event_id")
        if session_id is None and start_event_id:
            session_id = self._started.get(start_event_id) or self.spool.known_session_id(
                start_event_id
            )
        if session_id is None and record.get("start"):
            started = self._call("track_session_start", record["start"])  # idempotent
            if started.outcome is not Outcome.DELIVERED:
                return started
            session_id = started.result.get("session_id")
        if not isinstance(session_id, str):
            reason = f"its start {start_event_id} was never delivered"
            return Attempt(Outcome.REFUSED, {}, reason)
        return self._call("track_session_end", record["event"] | {"session_id": session_id})

    def _deliver_end_external(self, record: dict[str, Any]) -> Attempt:
        """The server finds the session by the client's own id (a write token suffices)."""
        return self._call(
            "track_session_end", record["event"] | {"external_id": record["external_id"]}
        )

    # -- the queue ---------------------------------------------------------------------

    def flush(self, budget: float | None = None, *, now: bool = False) -> FlushReport:
        """Deliver this destination's queue, oldest first, for at most `budget` seconds;
        only when its oldest record is due, unless `now`. Stops at the first record that
        must wait (transient or credentials), so order is kept."""
        url = self.destination.url
        report = FlushReport(url)
        deadline = None if budget is None else time.monotonic() + budget
        try:
            with self.spool.lease(url) as mine:
                if not mine:
                    report.busy = True
                elif now or self.spool.due(url):
                    self._flush_pages(report, deadline)
            report.remaining = self.spool.count(url)
        except SpoolError as exc:
            report.stopped_by, report.reason = Outcome.TRANSIENT, str(exc)
            self._note(str(exc))
        return report

    def _flush_pages(self, report: FlushReport, deadline: float | None) -> None:
        url = self.destination.url
        after = 0  # pages go forward: a record the spool could not remove is not sent twice
        while page := self.spool.head(url, PAGE, after):
            delivered: list[int] = []
            session_ids: dict[str, str] = {}
            try:
                for item in page:
                    if deadline is not None and time.monotonic() > deadline:
                        return
                    after = item.id
                    record = item.record()
                    if record is None:
                        self._set_aside(item.id, QUARANTINED, "cannot be read as a record")
                        report.quarantined += 1
                        continue
                    tried = self._within(deadline, record)
                    report.attempts[item.id] = tried
                    if tried.outcome is Outcome.DELIVERED:
                        delivered.append(item.id)
                        if session_id := self._session_id(record, tried):
                            session_ids[record["event"]["event_id"]] = session_id
                            self._started[record["event"]["event_id"]] = session_id
                    elif tried.outcome is Outcome.REFUSED:
                        self._set_aside(item.id, REJECTED, tried.reason)
                        self._note(f"{_describe(record)} refused: {tried.reason}")
                        report.rejected += 1
                    else:
                        if tried.outcome is Outcome.CREDENTIALS:
                            self._credentials(tried.reason)
                        with contextlib.suppress(SpoolError):  # a full disk: tried again anyway
                            self.spool.postpone(item.id, tried.reason)
                        report.stopped_by, report.reason = tried.outcome, tried.reason
                        return
            finally:
                report.delivered += len(delivered)
                try:
                    self.spool.delivered(delivered, session_ids)
                    self._started.clear()  # committed with the page: the spool knows them
                except SpoolError as exc:  # a full disk: sent again next time, harmlessly
                    report.unremoved += len(delivered)
                    report.reason = str(exc)

    def _set_aside(self, record_id: int, state: str, reason: str) -> None:
        try:
            self.spool.set_aside(record_id, state, reason)
        except SpoolError as exc:
            self._note(f"spool record {record_id} stays pending ({reason}): {exc}")
        else:
            if state == QUARANTINED:
                self._note(f"quarantined spool record {record_id}: {reason}")

    def _within(self, deadline: float | None, record: dict[str, Any]) -> Attempt:
        """Deliver a record, its calls cut short where the slice's deadline is nearer
        than the transport's own timeout."""
        if deadline is None:
            return self._deliver(record)
        usual = self.transport.timeout
        self.transport.timeout = max(0.05, min(usual, deadline - time.monotonic()))
        try:
            return self._deliver(record)
        finally:
            self.transport.timeout = usual


def hook_attempt(delivery: Delivery) -> Attempt:
    """A hook payload's delivery as an attempt: its line is the result's `said`."""
    outcome = Outcome(delivery.outcome)
    reason = "" if outcome is Outcome.DELIVERED else delivery.said
    return Attempt(outcome, {"said": delivery.said}, reason)


def _describe(record: dict[str, Any]) -> str:
    kind = record.get("kind")
    if kind == "hook":
        payload = record.get("payload") or {}
        return f"{payload.get('hook_event_name')} of Claude session {payload.get('session_id')}"
    event = record.get("event") or {}
    if kind == "start":
        return f"start {event.get('event_id')}"
    if kind == "end":
        return f"end of {record.get('session_id') or record.get('start_event_id')}"
    return f"end of external session {record.get('external_id')}"
