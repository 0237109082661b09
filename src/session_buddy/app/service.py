"""The application service: the one way every face (MCP tools, HTTP routes, CLI, the
client's local transport, the seed's SessionTracker) reaches core.

It validates wire events, turns them into core's plain inputs, decides on credentials,
counts metrics, and is the one place where a failure becomes an error result with an
`error_code` that clients branch on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from session_buddy import __version__
from session_buddy.app.auth import AuthError, Caller, TokenAuthority
from session_buddy.core import Actor, NewSession, SessionEnd, SessionLifecycleManager
from session_buddy.core.errors import InvalidArgument, SessionBuddyError, StoreUnavailable
from session_buddy.core.records import SessionOrigin
from session_buddy.core.transitions import EndOutcome
from session_buddy.mcp.event_models import (
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
)
from session_buddy.timestamps import to_micros

if TYPE_CHECKING:  # only the server counts metrics; prometheus_client is slow to load
    from session_buddy.app.metrics import SessionMetrics

M = TypeVar("M", bound=BaseModel)
STORE_UNAVAILABLE = "store unavailable, retry later"
INTERNAL_ERROR = "internal error: the server log has the details"
EXTERNAL_ID_MAX = 200
HEALTH_READ_SECONDS = 1.5  # a health check says degraded rather than wait longer
_START_LOGGED = {
    "tracked": "started",
    "resumed": "resumed in another process",
    "duplicate": "start repeated",
}


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def _validated(model: type[M], event: Any, kind: str) -> M:
    """A dict validated into `model`, or a model instance validated again if it skipped
    validation (model_construct). Raises InvalidArgument naming the first bad field."""
    try:
        if type(event) is model and getattr(event, "is_validated", False):
            return event
        if isinstance(event, BaseModel):
            event = event.model_dump(warnings=False)
        if not isinstance(event, dict):
            raise InvalidArgument(
                "event", f"expected a {model.__name__} or a mapping, got {type(event).__name__}"
            )
        return model.model_validate(event)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        field = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else "event"
        detail = describe_validation_error(exc)
        raise InvalidArgument(field, f"Invalid session {kind} event: {detail}") from exc
    except InvalidArgument as exc:
        raise InvalidArgument("event", f"Invalid session {kind} event: {exc}") from exc


def _field(event: Any, name: str) -> Any:
    return event.get(name) if isinstance(event, dict) else getattr(event, name, None)


def _client_id(given: Any) -> str | None:
    usable = isinstance(given, str) and 0 < len(given) <= EXTERNAL_ID_MAX and given.isprintable()
    return given if usable else None


def as_received(event: BaseModel | dict[str, Any]) -> str:
    """An event as the event log keeps it: the arguments as they came, unknown fields
    included (a model, from the Python API, as it was built)."""
    if isinstance(event, BaseModel):
        return event.model_dump_json(warnings=False)
    return json.dumps(event, separators=(",", ":"), default=repr)


def new_session(event: SessionStartEvent, payload: str, owner: str | None = None) -> NewSession:
    """A validated start event as core's input. A string `metadata.external_id` is the
    client's own session id, `metadata.parent_external_id` its parent's (a subagent's
    Claude Code session); `owner`, the subject of the token that sends it."""
    metadata = event.metadata
    origin = SessionOrigin(
        event_id=event.event_id,
        component_name=event.component_name,
        shell_type=event.shell_type,
        pid=event.pid,
        hostname=event.hostname,
        username=event.user.username,
        cwd=event.environment.cwd,
        python_version=event.environment.python_version,
        platform=event.environment.platform,
    )
    return NewSession(
        origin=origin,
        home=event.user.home,
        started_us=to_micros(event.started_at),
        start_metadata=metadata,
        payload=payload,
        external_id=_client_id(metadata.get("external_id")),
        parent_external_id=_client_id(metadata.get("parent_external_id")),
        owner=owner,
    )


class SessionService:
    def __init__(
        self,
        manager: SessionLifecycleManager,
        *,
        authority: TokenAuthority | None = None,
        metrics: SessionMetrics | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.manager = manager
        self.authority = authority
        self.metrics = metrics  # None: nothing to serve them from (library, CLI)
        self.logger = logger or logging.getLogger(__name__)

    def authorize(self, caller: Caller, scope: str) -> dict[str, Any]:
        """The caller's claims if it may use `scope` (none needed without a secret), else
        AuthError."""
        if self.authority is None:
            return {}
        try:
            return self.authority.authorize(caller, scope)
        except AuthError as exc:
            self._reject(exc.code)
            raise

    def failure(self, exc: BaseException) -> dict[str, Any]:
        """The error part of a result for any failure: a message that names what is
        wrong, or, for a store failure, only that it is worth retrying."""
        if isinstance(exc, AuthError):
            return {"status": "error", "error": f"{exc.code}: {exc}", "error_code": exc.code}
        if isinstance(exc, SessionBuddyError) and not isinstance(exc, StoreUnavailable):
            return {"status": "error", "error": str(exc), "error_code": exc.code}
        if isinstance(exc, StoreUnavailable):
            self.logger.error("store failure: %s", exc)
            self._reject("store_error")
            return {"status": "error", "error": STORE_UNAVAILABLE, "error_code": exc.code}
        self.logger.error("internal error: %r", exc, exc_info=exc)
        self._reject("internal_error")
        return {"status": "error", "error": INTERNAL_ERROR, "error_code": "internal_error"}

    def _reject(self, reason: str) -> None:
        if self.metrics:
            self.metrics.reject(reason)

    def _rejected(self, exc: InvalidArgument) -> None:
        self._reject(f"invalid_{exc.field}")

    async def start(
        self, event: SessionStartEvent | dict[str, Any], *, actor: Actor | None = None
    ) -> SessionStartResult:
        """Track a start: status 'tracked' with the session id, or 'error'. Never raises.
        `actor`: who a verified token says sends it (the session's owner)."""
        try:
            valid = _validated(SessionStartEvent, event, "start")
            owner = actor.subject if actor else None
            new = new_session(valid, as_received(event), owner)
            outcome = await self.manager.start_session(new, actor)
        except Exception as exc:
            if isinstance(exc, InvalidArgument):
                self._rejected(exc)
            failed = self.failure(exc)
            self.logger.error(
                "Session start failed: %s, component=%s, shell_type=%s, pid=%s",
                failed["error"],
                _field(event, "component_name"),
                _field(event, "shell_type"),
                _field(event, "pid"),
            )
            return SessionStartResult(session_id=None, **failed)
        happened = "tracked" if outcome.created else "resumed" if outcome.resumed else "duplicate"
        if self.metrics:
            self.metrics.event("session_start", happened)
            if outcome.created:
                self.metrics.session_started(valid.component_name)
        self.logger.info(
            "Session %s: session_id=%s, component=%s, shell_type=%s, pid=%s, user=%s, hostname=%s",
            _START_LOGGED[happened],
            outcome.session_id,
            valid.component_name,
            valid.shell_type,
            valid.pid,
            valid.user.username,
            valid.hostname,
        )
        warning = None
        if outcome.conflicts:
            warning = (
                f"event_id {valid.event_id} was already used by a start with other content "
                f"({', '.join(outcome.conflicts)} differ); this is its first session"
            )
            self.logger.warning("Session %s: %s", outcome.session_id, warning)
        return SessionStartResult(session_id=outcome.session_id, status="tracked", warning=warning)

    async def end(
        self,
        event: SessionEndEvent | dict[str, Any],
        *,
        external_id: str | None = None,
        actor: Actor | None = None,
    ) -> SessionEndResult:
        """Track an end: 'ended' (with the session's final state), 'not_found' or 'error'.
        Without a session id, `external_id` names the session by the client's own id.
        Never raises."""
        given = _field(event, "session_id")
        session_id = given if isinstance(given, str) else ""
        if session_id:
            external_id = None
        try:
            received = as_received(event)
            if external_id is not None and isinstance(event, dict):
                event = {**event, "session_id": external_id}  # validates as an id would
            valid = _validated(SessionEndEvent, event, "end")
            end = SessionEnd(
                session_id=None if external_id else valid.session_id,
                ended_us=to_micros(valid.ended_at),
                metadata=valid.metadata,
                payload=received,
                external_id=external_id,
                event_id=valid.event_id,
                actor=actor,
            )
            outcome = await self.manager.end_session(end)
        except Exception as exc:
            if isinstance(exc, InvalidArgument):
                self._rejected(exc)
            failed = self.failure(exc)
            self.logger.error(
                "Session end failed: session_id=%s, error=%s", session_id, failed["error"]
            )
            return SessionEndResult(session_id=session_id, **failed)
        self._count_end(outcome)
        if not outcome.found:
            self.logger.warning("Session end for unknown session %s", external_id or session_id)
            return SessionEndResult(session_id=outcome.session_id, status="not_found")
        warning = None
        if outcome.clamped:
            warning = (
                f"end timestamp {valid.timestamp} is before the session's start; "
                "duration clamped to 0"
            )
            self.logger.warning("Session %s: %s", outcome.session_id, warning)
        self.logger.info(
            "Session %s: session_id=%s, session_status=%s, duration_seconds=%s",
            "ended" if outcome.changed else "end repeated",
            outcome.session_id,
            outcome.session_status,
            outcome.duration_seconds,
        )
        return SessionEndResult(
            session_id=outcome.session_id,
            status="ended",
            session_status=outcome.session_status,
            duration_seconds=outcome.duration_seconds,
            warning=warning,
        )

    def _count_end(self, outcome: EndOutcome) -> None:
        if self.metrics is None:
            return
        if not outcome.found:
            self.metrics.event("session_end", "not_found")
        elif not outcome.changed:
            self.metrics.event("session_end", "duplicate")
        else:
            state = outcome.session_status or "ended"
            self.metrics.event("session_end", state)
            self.metrics.session_ended(
                outcome.component_name or "unknown", state, outcome.duration_seconds
            )

    async def heartbeat(
        self,
        session_id: str | None,
        timestamp: str | None,
        *,
        activity: str | None = None,
        external_id: str | None = None,
        detail: str | None = None,
        actor: Actor | None = None,
    ) -> dict[str, Any]:
        try:
            outcome = await self.manager.heartbeat(
                session_id,
                timestamp,
                activity=activity,
                external_id=external_id,
                detail=detail,
                actor=actor,
            )
        except InvalidArgument as exc:
            self._rejected(exc)
            raise
        if not outcome.found:
            status = "not_found"
        else:
            status = "recorded" if outcome.session_status == "active" else "ignored"
        if self.metrics:
            self.metrics.event("heartbeat", status)
        return {
            "session_id": outcome.session_id,
            "status": status,
            "session_status": outcome.session_status,
        }

    async def get_session(self, session_id: str) -> dict[str, Any]:
        record = await self.manager.get_session(session_id)
        return record if record is not None else {"session_id": session_id, "status": "not_found"}

    async def list_sessions(self, **filters: Any) -> dict[str, Any]:
        return await self.manager.list_sessions(**filters) | {"status": "ok"}

    async def session_stats(
        self,
        group_by: str | None,
        since: str | None,
        until: str | None,
        *,
        bucket: str | None = None,
        **filters: Any,
    ) -> dict[str, Any]:
        stats = await self.manager.session_stats(group_by, since, until, bucket=bucket, **filters)
        return stats | {"status": "ok"}

    async def session_events(self, session_id: str) -> dict[str, Any]:
        events = await self.manager.session_events(session_id)
        return {"session_id": session_id, "events": events, "status": "ok"}

    async def health(self) -> dict[str, Any]:
        """`degraded`, with a `reason`, while the database cannot be read (within
        HEALTH_READ_SECONDS) or writes fail."""
        reason = None
        try:
            count = self.manager.active_count()
            active: int | None = await asyncio.wait_for(count, HEALTH_READ_SECONDS)
        except TimeoutError:
            self.logger.warning("health check: no answer within %g s", HEALTH_READ_SECONDS)
            active, reason = None, f"the database did not answer within {HEALTH_READ_SECONDS:g} s"
        except Exception as exc:
            self.logger.warning("health check: database unreachable: %s", exc)
            active, reason = None, "the database cannot be read"
        failing = self.manager.store.failing
        if failing is not None:
            self.logger.warning("health check: %s", failing)
            reason = reason or "writes fail (see the server log)"
        health = {
            "status": "ok" if reason is None else "degraded",
            "version": __version__,
            "database_reachable": active is not None,
            "active_sessions": active,
        }
        return health | ({"reason": reason} if reason else {})

    async def reap(self) -> list[str]:
        return await self.manager.reap()
