"""SessionLifecycleManager: every session operation, on top of a session store."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from session_buddy.config import resolve_database_url
from session_buddy.core import queries, sessions
from session_buddy.core.processes import why_gone
from session_buddy.core.states import classify_end, exit_code_of
from session_buddy.core.store import Store, open_store
from session_buddy.core.timestamps import now_micros, parse_timestamp, to_micros

if TYPE_CHECKING:
    from session_buddy.mcp.event_models import SessionEndEvent, SessionStartEvent

ABANDON_AFTER_ENV = "SESSION_BUDDY_ABANDON_AFTER"
DEFAULT_ABANDON_AFTER = timedelta(hours=24)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _micros(value: str | datetime | None, name: str) -> int | None:
    """A filter time (ISO 8601 text or datetime) as UTC microseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return to_micros(value if value.tzinfo else value.replace(tzinfo=UTC))
    try:
        return to_micros(parse_timestamp(value))
    except ValueError as exc:
        raise ValueError(f"Invalid {name}: {exc}") from exc


def _default_abandon_after() -> timedelta:
    raw = os.environ.get(ABANDON_AFTER_ENV)
    return timedelta(seconds=float(raw)) if raw else DEFAULT_ABANDON_AFTER


class SessionLifecycleManager:
    """Starts, ends, heartbeats, queries and reaps sessions in one durable store.

    `SessionLifecycleManager()` opens the default store ($SESSION_BUDDY_DATABASE_URL, else
    the embedded SQLite file under $XDG_DATA_HOME); pass `database_url` for another.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        abandon_after: timedelta | float | None = None,
        hostname: str | None = None,
    ) -> None:
        self.database_url = resolve_database_url(database_url)
        if abandon_after is None:
            abandon_after = _default_abandon_after()
        if not isinstance(abandon_after, timedelta):
            abandon_after = timedelta(seconds=abandon_after)
        if abandon_after <= timedelta(0):
            raise ValueError("abandon_after must be positive")
        self.abandon_after = abandon_after
        self.hostname = hostname or platform.node()
        self.store: Store = open_store(self.database_url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.store.close()

    async def start_session(
        self,
        event: SessionStartEvent,
        *,
        external_id: str | None = None,
    ) -> sessions.StartOutcome:
        """Record a validated start; a repeated event id returns the first session.

        `external_id` (default: a string `metadata["external_id"]`) is the client's own
        session id: a repeated start of a running external session changes nothing, and
        one after it ended starts a new session linked by previous_session_id.
        """
        if external_id is None:
            given = event.metadata.get("external_id")
            external_id = given if isinstance(given, str) and 0 < len(given) <= 200 else None
        new = sessions.NewSession(
            event_id=event.event_id.strip().lower(),
            component_name=event.component_name,
            shell_type=event.shell_type,
            pid=event.pid,
            hostname=event.hostname,
            username=event.user.username,
            home=event.user.home,
            cwd=event.environment.cwd,
            python_version=event.environment.python_version,
            platform=event.environment.platform,
            started_us=to_micros(event.started_at),
            start_metadata=_compact_json(event.metadata),
            payload=event.model_dump_json(),
            external_id=external_id,
        )
        received = now_micros()
        return await self.store.write(lambda tx: sessions.start_session(tx, new, received))

    async def end_session(self, event: SessionEndEvent) -> sessions.EndOutcome:
        """Record a validated end; an unknown session id comes back as not found."""
        status, reason = classify_end(event.metadata)
        end = sessions.SessionEnd(
            session_id=event.session_id,
            ended_us=to_micros(event.ended_at),
            status=status,
            end_reason=reason,
            exit_code=exit_code_of(event.metadata),
            end_metadata=_compact_json(event.metadata),
            payload=event.model_dump_json(),
        )
        received = now_micros()
        return await self.store.write(lambda tx: sessions.end_session(tx, end, received))

    async def heartbeat(
        self, session_id: str, timestamp: str | None = None
    ) -> sessions.HeartbeatOutcome:
        """Mark a session as alive at `timestamp` (event time; default: now)."""
        received = now_micros()
        seen = _micros(timestamp, "timestamp") or received
        payload = _compact_json({"session_id": session_id, "timestamp": timestamp})
        return await self.store.write(
            lambda tx: sessions.record_heartbeat(tx, session_id, seen, received, payload)
        )

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.store.read(lambda tx: queries.fetch_session(tx, session_id))

    async def active_count(self) -> int:
        return await self.store.read(queries.count_active)

    async def list_sessions(
        self,
        *,
        status: str | None = None,
        component_name: str | None = None,
        shell_type: str | None = None,
        hostname: str | None = None,
        username: str | None = None,
        external_id: str | None = None,
        started_after: str | datetime | None = None,
        started_before: str | datetime | None = None,
        limit: int = queries.DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of session records, newest first: {"sessions": [...], "next_cursor"}."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= queries.MAX_PAGE
        ):
            raise ValueError(f"Invalid limit {limit!r}: must be 1..{queries.MAX_PAGE}")
        if status:
            queries.check_status_filter(status)
        given = {
            "status": status,
            "component_name": component_name,
            "shell_type": shell_type,
            "hostname": hostname,
            "username": username,
            "external_id": external_id,
        }
        spec = queries.SessionFilter(
            equals={column: value for column, value in given.items() if value},
            started_after_us=_micros(started_after, "started_after"),
            started_before_us=_micros(started_before, "started_before"),
            limit=limit,
            cursor=queries.decode_cursor(cursor) if cursor else None,
        )
        return await self.store.read(lambda tx: queries.list_sessions(tx, spec))

    async def session_stats(
        self,
        group_by: str = "component_name",
        since: str | datetime | None = None,
        until: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Counts per state, durations and failure rates per group, sessions started in
        [since, until)."""
        since_us, until_us = _micros(since, "since"), _micros(until, "until")
        groups = await self.store.read(
            lambda tx: queries.session_stats(tx, group_by, since_us, until_us)
        )
        return {
            "group_by": group_by,
            "since": since if not isinstance(since, datetime) else since.isoformat(),
            "until": until if not isinstance(until, datetime) else until.isoformat(),
            "groups": groups,
        }

    async def reap(self) -> list[str]:
        """Abandon sessions that went silent, or whose local process is gone or reused."""
        now = now_micros()
        cutoff = now - int(self.abandon_after / timedelta(microseconds=1))
        stale = await self.store.write(lambda tx: sessions.abandon_stale(tx, cutoff, now))
        local = await self.store.read(lambda tx: sessions.active_on_host(tx, self.hostname))
        reasons = {
            session_id: reason
            for session_id, pid, started_us in local
            if (reason := why_gone(pid, started_us)) is not None
        }
        gone = await self.store.write(lambda tx: sessions.abandon_sessions(tx, reasons, now))
        return stale + gone
