"""What each MCP tool does, independent of the MCP transport.

Every method answers with a plain JSON-ready dict (the tool's structured content) and
never raises for bad input or a failed store: those come back as status="error".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from session_buddy import __version__
from session_buddy.core import SessionLifecycleManager
from session_buddy.core.queries import DEFAULT_PAGE, FILTER_COLUMNS
from session_buddy.mcp.auth import READ_SCOPE, WRITE_SCOPE, AuthError, TokenAuthority, bearer_token
from session_buddy.mcp.metrics import SessionMetrics
from session_buddy.mcp.session_tracker import SessionTracker

logger = logging.getLogger(__name__)
Headers = Mapping[str, str] | None
SESSION_ID_MAX = 200


class ArgumentError(ValueError):
    """A tool argument is missing or has the wrong type or value."""


def _text(name: str, value: Any, *, required: bool = False, max_length: int = 500) -> str | None:
    if value is None or value == "":
        if required:
            raise ArgumentError(f"{name}: field required")
        return None
    if not isinstance(value, str):
        raise ArgumentError(f"{name}: must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise ArgumentError(f"{name}: must have at most {max_length} characters")
    return value


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_PAGE
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"limit: must be an integer, got {type(value).__name__}")
    return value


class SessionService:
    def __init__(
        self,
        manager: SessionLifecycleManager,
        *,
        authority: TokenAuthority | None = None,
        metrics: SessionMetrics | None = None,
    ) -> None:
        self.manager = manager
        self.authority = authority
        self.metrics = metrics or SessionMetrics()
        self.tracker = SessionTracker(manager, metrics=self.metrics)

    def _denied(self, token: Any, headers: Headers, scope: str) -> str | None:
        """None when the caller may use `scope`, else the reason it may not."""
        if self.authority is None:
            return None
        credential = token if isinstance(token, str) and token else None
        if credential is None and headers is not None:
            credential = bearer_token(headers.get("authorization"))
        try:
            self.authority.authorize(credential, scope)
        except AuthError as exc:
            kind = "forbidden" if exc.insufficient_scope else "unauthorized"
            self.metrics.reject(kind)
            return f"{kind}: {exc}"
        return None

    async def track_session_start(
        self, arguments: dict[str, Any], token: Any = None, headers: Headers = None
    ) -> dict[str, Any]:
        if denied := self._denied(token, headers, WRITE_SCOPE):
            return {"session_id": None, "status": "error", "error": denied}
        event = {key: value for key, value in arguments.items() if value is not None}
        result = await self.tracker.handle_session_start(event)  # type: ignore[arg-type]
        return result.model_dump(mode="json")

    async def track_session_end(
        self, arguments: dict[str, Any], token: Any = None, headers: Headers = None
    ) -> dict[str, Any]:
        raw_id = arguments.get("session_id")
        session_id = raw_id if isinstance(raw_id, str) else ""
        if denied := self._denied(token, headers, WRITE_SCOPE):
            return {"session_id": session_id, "status": "error", "error": denied}
        event = {key: value for key, value in arguments.items() if value is not None}
        result = await self.tracker.handle_session_end(event)  # type: ignore[arg-type]
        return result.model_dump(mode="json")

    async def track_session_heartbeat(
        self, session_id: Any, timestamp: Any = None, token: Any = None, headers: Headers = None
    ) -> dict[str, Any]:
        given_id = session_id if isinstance(session_id, str) else ""
        if denied := self._denied(token, headers, WRITE_SCOPE):
            return {"session_id": given_id, "status": "error", "error": denied}
        try:
            checked_id = _text("session_id", session_id, required=True, max_length=SESSION_ID_MAX)
            checked_time = _text("timestamp", timestamp, max_length=64)
            outcome = await self.manager.heartbeat(str(checked_id), checked_time)
        except ValueError as exc:
            self.metrics.reject("invalid_heartbeat")
            return {"session_id": given_id, "status": "error", "error": str(exc)}
        except Exception as exc:
            logger.exception("heartbeat failed")
            self.metrics.reject("store_error")
            return {"session_id": given_id, "status": "error", "error": f"heartbeat failed: {exc}"}
        if not outcome.found:
            status = "not_found"
        else:
            status = "recorded" if outcome.session_status == "active" else "ignored"
        self.metrics.event("heartbeat", status)
        return {
            "session_id": outcome.session_id,
            "status": status,
            "session_status": outcome.session_status,
        }

    async def get_session(
        self, session_id: Any, token: Any = None, headers: Headers = None
    ) -> dict[str, Any]:
        given_id = session_id if isinstance(session_id, str) else ""
        if denied := self._denied(token, headers, READ_SCOPE):
            return {"session_id": given_id, "status": "error", "error": denied}
        try:
            checked = _text("session_id", session_id, required=True, max_length=SESSION_ID_MAX)
            record = await self.manager.get_session(str(checked))
        except ValueError as exc:
            return {"session_id": given_id, "status": "error", "error": str(exc)}
        except Exception as exc:
            logger.exception("get_session failed")
            return {"session_id": given_id, "status": "error", "error": f"lookup failed: {exc}"}
        return record if record is not None else {"session_id": given_id, "status": "not_found"}

    async def list_sessions(
        self,
        filters: dict[str, Any],
        limit: Any = None,
        cursor: Any = None,
        token: Any = None,
        headers: Headers = None,
    ) -> dict[str, Any]:
        if denied := self._denied(token, headers, READ_SCOPE):
            return {"sessions": [], "next_cursor": None, "status": "error", "error": denied}
        try:
            checked = {
                name: _text(name, filters.get(name), max_length=255) for name in FILTER_COLUMNS
            }
            checked["started_after"] = _text("started_after", filters.get("started_after"))
            checked["started_before"] = _text("started_before", filters.get("started_before"))
            page = await self.manager.list_sessions(
                **checked, limit=_limit(limit), cursor=_text("cursor", cursor, max_length=1000)
            )
        except ValueError as exc:
            return {"sessions": [], "next_cursor": None, "status": "error", "error": str(exc)}
        except Exception as exc:
            logger.exception("list_sessions failed")
            error = f"listing failed: {exc}"
            return {"sessions": [], "next_cursor": None, "status": "error", "error": error}
        return page | {"status": "ok"}

    async def session_stats(
        self,
        group_by: Any = None,
        since: Any = None,
        until: Any = None,
        token: Any = None,
        headers: Headers = None,
    ) -> dict[str, Any]:
        empty: dict[str, Any] = {"group_by": str(group_by or ""), "since": None, "until": None}
        empty["groups"] = []
        if denied := self._denied(token, headers, READ_SCOPE):
            return empty | {"status": "error", "error": denied}
        try:
            stats = await self.manager.session_stats(
                _text("group_by", group_by) or "component_name",
                _text("since", since),
                _text("until", until),
            )
        except ValueError as exc:
            return empty | {"status": "error", "error": str(exc)}
        except Exception as exc:
            logger.exception("session_stats failed")
            return empty | {"status": "error", "error": f"stats failed: {exc}"}
        return stats | {"status": "ok"}

    async def health_check(self) -> dict[str, Any]:
        try:
            active: int | None = await self.manager.active_count()
        except Exception:
            logger.exception("health check: database unreachable")
            active = None
        return {
            "status": "ok" if active is not None else "degraded",
            "version": __version__,
            "database_reachable": active is not None,
            "active_sessions": active,
        }
