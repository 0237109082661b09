"""SessionTracker, the seed's API: wire events in, wire results out, never raises."""

from __future__ import annotations

import logging

from session_buddy.app.metrics import SessionMetrics
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp.event_models import (
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
)


class SessionTracker:
    """Handles session lifecycle events from shells via a SessionLifecycleManager.

    Logs INFO on success (component, shell type, pid, session id) and ERROR on failure,
    to `logger` (default `session_buddy.mcp.session_tracker`).
    """

    def __init__(
        self,
        session_manager: SessionLifecycleManager,
        logger: logging.Logger | None = None,
        *,
        metrics: SessionMetrics | None = None,
    ) -> None:
        self.session_manager = session_manager
        self.logger = logger or logging.getLogger(__name__)
        self.service = SessionService(session_manager, metrics=metrics, logger=self.logger)

    async def handle_session_start(self, event: SessionStartEvent) -> SessionStartResult:
        """Track a start; answers status 'tracked' with the session id, or 'error'."""
        return await self.service.start(event)

    async def handle_session_end(self, event: SessionEndEvent) -> SessionEndResult:
        """Track an end; answers 'ended' (with the session's final state), 'not_found'
        or 'error'."""
        return await self.service.end(event)
