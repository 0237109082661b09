"""SessionTracker: turns wire events into session changes and never raises."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from session_buddy.core import SessionLifecycleManager
from session_buddy.core.sessions import EndOutcome
from session_buddy.mcp.event_models import (
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
)
from session_buddy.mcp.metrics import SessionMetrics

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def _coerce(model: type[M], event: Any) -> M:
    """Validate a dict, or re-validate a model that skipped validation (model_construct)."""
    if type(event) is model and getattr(event, "is_validated", False):
        return event
    if isinstance(event, BaseModel):
        event = event.model_dump(warnings=False)
    if not isinstance(event, dict):
        raise TypeError(f"expected a {model.__name__} or a mapping, got {type(event).__name__}")
    return model.model_validate(event)


def _field(event: Any, name: str) -> Any:
    if isinstance(event, dict):
        return event.get(name)
    return getattr(event, name, None)


class SessionTracker:
    """Handles session lifecycle events from shells via a SessionLifecycleManager."""

    def __init__(
        self,
        session_manager: SessionLifecycleManager,
        logger: logging.Logger | None = None,
        *,
        metrics: SessionMetrics | None = None,
    ) -> None:
        self.session_manager = session_manager
        self.logger = logger or logging.getLogger(__name__)
        self.metrics = metrics

    async def handle_session_start(self, event: SessionStartEvent) -> SessionStartResult:
        """Track a start; answers status 'tracked' with the session id, or 'error'."""
        try:
            valid = _coerce(SessionStartEvent, event)
        except (ValidationError, TypeError) as exc:
            return self._start_failed(event, self._invalid("start", exc))
        try:
            outcome = await self.session_manager.start_session(valid)
        except Exception as exc:
            self.logger.exception("Session start raised")
            self._reject("store_error")
            return self._start_failed(event, f"Session start failed: {exc}")
        if self.metrics:
            self.metrics.event("session_start", "tracked" if outcome.created else "duplicate")
            if outcome.created:
                self.metrics.session_started(valid.component_name)
        self.logger.info(
            "Session %s: session_id=%s, component=%s, shell_type=%s, pid=%d, user=%s, hostname=%s",
            "started" if outcome.created else "start repeated",
            outcome.session_id,
            valid.component_name,
            valid.shell_type,
            valid.pid,
            valid.user.username,
            valid.hostname,
        )
        return SessionStartResult(session_id=outcome.session_id, status="tracked")

    async def handle_session_end(self, event: SessionEndEvent) -> SessionEndResult:
        """Track an end; answers 'ended' (with the session's final state), 'not_found'
        or 'error'."""
        raw_id = _field(event, "session_id")
        session_id = raw_id if isinstance(raw_id, str) else ""
        try:
            valid = _coerce(SessionEndEvent, event)
        except (ValidationError, TypeError) as exc:
            return self._end_failed(session_id, self._invalid("end", exc))
        try:
            outcome = await self.session_manager.end_session(valid)
        except Exception as exc:
            self.logger.exception("Session end raised")
            self._reject("store_error")
            return self._end_failed(session_id, f"Session end failed: {exc}")
        self._count_end(outcome)
        if not outcome.found:
            self.logger.warning("Session end for unknown session_id=%s", valid.session_id)
            return SessionEndResult(session_id=valid.session_id, status="not_found")
        warning = None
        if outcome.clamped:
            warning = (
                f"end timestamp {valid.timestamp} is before the session's start; "
                "duration clamped to 0"
            )
            self.logger.warning("Session %s: %s", valid.session_id, warning)
        self.logger.info(
            "Session %s: session_id=%s, session_status=%s, duration_seconds=%s",
            "ended" if outcome.changed else "end repeated",
            valid.session_id,
            outcome.session_status,
            outcome.duration_seconds,
        )
        return SessionEndResult(
            session_id=valid.session_id,
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

    def _reject(self, reason: str) -> None:
        if self.metrics:
            self.metrics.reject(reason)

    def _invalid(self, kind: str, exc: Exception) -> str:
        if isinstance(exc, ValidationError):
            errors = exc.errors(include_url=False)
            field = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else "event"
            self._reject(f"invalid_{field}")
            detail = describe_validation_error(exc)
        else:
            self._reject("malformed")
            detail = str(exc)
        return f"Invalid session {kind} event: {detail}"

    def _start_failed(self, event: Any, error: str) -> SessionStartResult:
        self.logger.error(
            "Session start failed: %s, component=%s, shell_type=%s, pid=%s",
            error,
            _field(event, "component_name"),
            _field(event, "shell_type"),
            _field(event, "pid"),
        )
        return SessionStartResult(session_id=None, status="error", error=error)

    def _end_failed(self, session_id: str, error: str) -> SessionEndResult:
        self.logger.error("Session end failed: session_id=%s, error=%s", session_id, error)
        return SessionEndResult(session_id=session_id, status="error", error=error)
