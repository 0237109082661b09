"""SessionLifecycleManager: every session operation, on top of a session store."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from session_buddy.config import Settings
from session_buddy.core import queries, transitions, usage
from session_buddy.core.errors import InvalidArgument, plain_text
from session_buddy.core.records import FILTER_COLUMNS
from session_buddy.core.retention import PruneReport
from session_buddy.core.retention import prune as retention_prune
from session_buddy.core.states import ACTIVITIES
from session_buddy.core.store import Store, open_store
from session_buddy.core.store.base import T, Tx
from session_buddy.core.transitions import (
    Actor,
    EndOutcome,
    HeartbeatOutcome,
    NewSession,
    SessionEnd,
    StartOutcome,
)
from session_buddy.processes import why_gone
from session_buddy.timestamps import format_micros, now_micros, parse_timestamp, to_micros


def _micros(value: str | datetime | None, name: str) -> int | None:
    """A filter time (ISO 8601 text or datetime) as UTC microseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return to_micros(value if value.tzinfo else value.replace(tzinfo=UTC))
    try:
        return to_micros(parse_timestamp(value))
    except ValueError as exc:
        raise InvalidArgument(name, f"Invalid {name}: {exc}") from exc


MAX_AHEAD_US = 24 * 3600 * 1_000_000
# How long reported usage waits for its session's start before it is dropped.
USAGE_WAITS = timedelta(days=7)
RECENT_FINISHED = 20  # the newest finished sessions an overview shows
COSTLIEST = 10  # the sessions of highest reported cost an overview shows


def _equals(given: dict[str, str | None]) -> dict[str, str]:
    """The filters that were given, checked."""
    if given.get("status"):
        queries.check_status_filter(str(given["status"]))
    return {column: plain_text(column, value) for column, value in given.items() if value}


def _not_ahead(event_us: int, received_us: int) -> None:
    """An event dated more than 24 h after the server's clock is refused: it would sort
    first forever. Old events replayed late are fine."""
    if event_us > received_us + MAX_AHEAD_US:
        ahead = (event_us - received_us) / 3_600_000_000
        raise InvalidArgument(
            "timestamp",
            f"timestamp is {ahead:.0f} h ahead of the server clock (at most 24 h allowed)",
        )


class SessionLifecycleManager:
    """Starts, ends, heartbeats, queries and reaps sessions in one durable store.

    `SessionLifecycleManager()` opens the default store ($SESSION_BUDDY_DATABASE_URL, else
    the embedded SQLite file under $XDG_DATA_HOME); pass `database_url` for another, and
    `read_only=True` to only read an existing one (no lock taken, nothing created).
    `clock` is the server's clock (UTC microseconds), for receipt times and the reaper.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        abandon_after: timedelta | float | None = None,
        hostname: str | None = None,
        settings: Settings | None = None,
        read_only: bool = False,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        settings = settings or Settings.from_environment()
        self.database_url = database_url or settings.database_url
        if abandon_after is None:
            abandon_after = settings.abandon_after
        if not isinstance(abandon_after, timedelta):
            abandon_after = timedelta(seconds=abandon_after)
        if abandon_after <= timedelta(0):
            raise InvalidArgument("abandon_after", "abandon_after must be positive")
        self.abandon_after = abandon_after
        self.hostname = hostname or platform.node()
        self.clock = clock  # the server's clock, UTC microseconds: receipt times, staleness
        self.store: Store = open_store(
            self.database_url, sqlite_synchronous=settings.sqlite_synchronous, read_only=read_only
        )
        # Told, after each commit, the transitions it made (queries.transitions_seen);
        # called on the event loop, so it must not block (an exporter queues them).
        self.on_transitions: Callable[[list[dict[str, Any]]], None] | None = None

    async def _write(self, work: Callable[[Tx], T]) -> T:
        """`store.write`, telling `on_transitions` what the work changed once it is
        committed (nothing is told of work that failed or was rolled back)."""
        listener = self.on_transitions
        if listener is None:
            return await self.store.write(work)

        def observed(tx: Tx) -> tuple[T, list[dict[str, Any]]]:
            tx.observed = []
            try:
                result = work(tx)
                return result, queries.transitions_seen(tx, tx.observed)
            finally:
                tx.observed = None

        result, seen = await self.store.write(observed)
        if seen:
            listener(seen)
        return result

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

    async def start_session(self, new: NewSession, actor: Actor | None = None) -> StartOutcome:
        """Record a start; a repeated event id returns the first session.

        With an `external_id` (the client's own session id), a repeated start of a
        running external session changes nothing, and one after it ended starts a new
        session linked by previous_session_id.
        """
        received = self.clock()
        _not_ahead(new.started_us, received)
        return await self._write(lambda tx: transitions.start_session(tx, new, received, actor))

    async def end_session(self, end: SessionEnd) -> EndOutcome:
        """Record an end; an unknown session id comes back as not found."""
        received = self.clock()
        _not_ahead(end.ended_us, received)
        return await self._write(lambda tx: transitions.end_session(tx, end, received))

    async def heartbeat(
        self,
        session_id: str | None,
        timestamp: str | datetime | None = None,
        *,
        activity: str | None = None,
        external_id: str | None = None,
        detail: str | None = None,
        actor: Actor | None = None,
    ) -> HeartbeatOutcome:
        """Mark a session as alive at `timestamp` (event time; default: now), doing
        `activity` when given (`detail`, e.g. an error, goes to the event log); without a
        session id, the latest session of `external_id`."""
        if activity is not None and activity not in ACTIVITIES:
            raise InvalidArgument(
                "activity",
                f"Invalid activity {activity!r}: use one of {', '.join(ACTIVITIES)}",
            )
        if session_id is None and external_id is None:
            raise InvalidArgument("session_id", "session_id: field required (or external_id)")
        for name, value in (("session_id", session_id), ("external_id", external_id)):
            if value is not None:
                plain_text(name, value)
        received = self.clock()
        given = _micros(timestamp, "timestamp")
        seen = received if given is None else given
        _not_ahead(seen, received)
        payload = {"session_id": session_id, "timestamp": timestamp}
        extras = {"activity": activity, "external_id": external_id, "detail": detail}
        payload |= {name: value for name, value in extras.items() if value is not None}
        return await self._write(
            lambda tx: transitions.record_heartbeat(
                tx,
                session_id,
                seen,
                received,
                payload,
                activity=activity,
                external_id=external_id,
                live=given is None,
                actor=actor,
                detail=detail,
            )
        )

    async def record_usage(
        self, usages: dict[str, usage.Usage], growths: list[usage.Growth] | None = None
    ) -> dict[str, str | None]:
        """Add what agents report they used to their sessions, by client session id
        (`external_id`); usage of a client id not started yet waits for its start. Says
        which session each client id's usage went to (None: waiting)."""
        now = self.clock()
        return await self.store.write(lambda tx: usage.record_all(tx, usages, growths or [], now))

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        plain_text("session_id", session_id)
        return await self.store.read(lambda tx: queries.fetch_session(tx, session_id))

    async def linked_to(self, session_id: str, limit: int = 50) -> dict[str, Any]:
        """The sessions that continue this one, and its subagents."""
        plain_text("session_id", session_id)
        return await self.store.read(lambda tx: queries.linked_to(tx, session_id, limit))

    async def most_frequent_components(self, limit: int) -> list[str]:
        return await self.store.read(lambda tx: queries.most_frequent_components(tx, limit))

    async def active_count(self) -> int:
        return await self.store.read(queries.count_active)

    async def needing_someone(self, limit: int = 50) -> list[str]:
        """Ids of the active sessions waiting for input or failing, longest first."""
        return await self.store.read(lambda tx: queries.needing_someone(tx, limit))

    async def list_sessions(
        self,
        *,
        status: str | None = None,
        component_name: str | None = None,
        shell_type: str | None = None,
        hostname: str | None = None,
        username: str | None = None,
        external_id: str | None = None,
        activity: str | None = None,
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
            raise InvalidArgument(
                "limit", f"Invalid limit {limit!r}: must be 1..{queries.MAX_PAGE}"
            )
        given = {
            "status": status,
            "component_name": component_name,
            "shell_type": shell_type,
            "hostname": hostname,
            "username": username,
            "external_id": external_id,
            "activity": activity,
        }
        spec = queries.SessionFilter(
            equals=_equals(given),
            started_after_us=_micros(started_after, "started_after"),
            started_before_us=_micros(started_before, "started_before"),
            limit=limit,
            cursor=queries.decode_cursor(cursor) if cursor else None,
        )
        return await self.store.read(lambda tx: queries.list_sessions(tx, spec))

    async def session_stats(
        self,
        group_by: str | None = "component_name",
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        *,
        bucket: str | None = None,
        percentiles: bool = True,
        **filters: Any,
    ) -> dict[str, Any]:
        """Counts per state, durations and failure rates per group and/or per time
        `bucket` (hour, day, week), of sessions started in [since, until) that match the
        `filters` (the list_sessions ones: status, component_name, ...). Without
        `percentiles`, p50 and p95 are left out (None)."""
        queries.check_group_by(group_by)
        queries.check_bucket(bucket)
        unknown = sorted(set(filters) - set(FILTER_COLUMNS))
        if unknown:
            raise InvalidArgument(unknown[0], f"Unknown filter(s): {', '.join(unknown)}")
        since_us, until_us = _micros(since, "since"), _micros(until, "until")
        if since_us is not None and until_us is not None and since_us > until_us:
            raise InvalidArgument("since", f"since ({since}) is later than until ({until})")
        spec = queries.StatsSpec(
            group_by, bucket, _equals(filters), since_us, until_us, percentiles
        )
        groups = await self.store.read(lambda tx: queries.session_stats(tx, spec))
        return {
            "group_by": group_by,
            **({"bucket": bucket} if bucket else {}),
            "since": since if not isinstance(since, datetime) else since.isoformat(),
            "until": until if not isinstance(until, datetime) else until.isoformat(),
            "groups": groups,
        }

    async def overview(
        self,
        since: str | datetime,
        until: str | datetime | None = None,
        *,
        bucket: str = "hour",
        **filters: str | None,
    ) -> dict[str, Any]:
        """What a dashboard shows of the sessions started in [since, until): stats per
        component, per time `bucket` and over all, the duration histogram of cleanly
        ended sessions, the newest finished sessions, the costliest sessions and the cost
        and tokens per component and bucket. The counts and the durations are
        read side by side, each on a reader of its own."""
        queries.check_bucket(bucket)
        since_us, until_us = _micros(since, "since"), _micros(until, "until")
        equals = _equals(filters)
        spec = queries.StatsSpec("component_name", bucket, equals, since_us, until_us)
        per_key = queries.StatsSpec("component_name", None, equals, since_us, until_us)

        def counts_and_finished(tx: Any) -> tuple[Any, dict[str, Any]]:
            return queries.state_counts(tx, spec), {
                "finished": queries.recent_finished(tx, spec, RECENT_FINISHED),
                "costliest": queries.costliest(tx, spec, COSTLIEST),
                "spend": [
                    {"key": key, "bucket": format_micros(int(bucket))} | sums
                    for (key, bucket), sums in queries.usage_totals(tx, spec).items()
                ],
            }

        lists: dict[str, Any]
        (counts, lists), durations = await asyncio.gather(
            self.store.read(counts_and_finished),
            self.store.read(lambda tx: queries.window_durations(tx, per_key)),
        )
        return queries.summarize(counts, durations) | lists

    async def session_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """A session's event log, oldest first: the events after event id `after`, at
        most `limit` of them (all without one)."""
        plain_text("session_id", session_id)
        return await self.store.read(
            lambda tx: queries.session_events(tx, session_id, after, limit)
        )

    async def prune(self, before: str | datetime, *, dry_run: bool = False) -> PruneReport:
        """Delete finished sessions whose last activity is before `before` (an active one
        never), and their events."""
        cutoff = _micros(before, "before")
        if cutoff is None:
            raise InvalidArgument("before", "before: a time is required")
        return await retention_prune(self.store, cutoff, dry_run=dry_run)

    async def upkeep(self, retention: timedelta | None) -> tuple[list[str], PruneReport | None]:
        """One run of a server's reaper: abandon silent and gone sessions, drop usage
        that waited longer than USAGE_WAITS for its session's start, then, with a
        `retention`, prune finished sessions quiet for longer than that (by this
        manager's clock)."""
        reaped = await self.reap()
        forgotten = self.clock() - int(USAGE_WAITS / timedelta(microseconds=1))
        await self.store.write(lambda tx: usage.forget_waiting(tx, forgotten))
        if retention is None:
            return reaped, None
        cutoff = self.clock() - int(retention / timedelta(microseconds=1))
        return reaped, await retention_prune(self.store, cutoff)

    async def reap(self) -> list[str]:
        """Abandon sessions that went silent, or whose local process is gone or reused."""
        now = self.clock()
        cutoff = now - int(self.abandon_after / timedelta(microseconds=1))
        silent = await self._write(lambda tx: transitions.abandon_silent(tx, cutoff, now))
        local = await self.store.read(lambda tx: transitions.active_on_host(tx, self.hostname))
        gone = {
            session: why
            for session in local
            if (why := why_gone(session.pid, session.started_us)) is not None
        }
        if not gone:
            return silent
        abandoned = await self._write(lambda tx: transitions.abandon_gone(tx, gone, now))
        return silent + abandoned
