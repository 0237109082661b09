"""Output models of the MCP tools beyond the start/end results (their output schemas)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class HeartbeatResult(BaseModel):
    session_id: str
    status: str = Field(
        description="recorded, ignored (session already ended), not_found or error",
        json_schema_extra={"enum": ["recorded", "ignored", "not_found", "error"]},
    )
    session_status: str | None = None
    error: str | None = None


class SessionRecord(BaseModel):
    """A stored session (DESIGN §3); on a miss only session_id and status='not_found'."""

    session_id: str
    status: str = Field(description="active, ended, crashed, abandoned, not_found or error")
    error: str | None = None
    event_id: str | None = None
    component_name: str | None = None
    shell_type: str | None = None
    pid: int | None = None
    hostname: str | None = None
    username: str | None = None
    cwd: str | None = None
    python_version: str | None = None
    platform: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    last_seen_at: str | None = None
    duration_seconds: float | None = None
    end_reason: str | None = None
    exit_code: int | None = None
    start_metadata: dict[str, Any] | None = None
    end_metadata: dict[str, Any] | None = None
    external_id: str | None = None
    previous_session_id: str | None = None


class SessionPage(BaseModel):
    sessions: list[SessionRecord]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")
    status: str = Field(default="ok", json_schema_extra={"enum": ["ok", "error"]})
    error: str | None = None


class StatsGroup(BaseModel):
    key: str | None
    total: int
    active: int
    ended: int
    crashed: int
    abandoned: int
    duration_mean: float | None = Field(description="Mean duration of cleanly ended sessions")
    duration_p50: float | None
    duration_p95: float | None
    crash_rate: float | None = Field(description="crashed / finished (non-active) sessions")
    abandon_rate: float | None = Field(description="abandoned / finished sessions")


class SessionStats(BaseModel):
    group_by: str
    since: str | None
    until: str | None
    groups: list[StatsGroup]
    status: str = Field(default="ok", json_schema_extra={"enum": ["ok", "error"]})
    error: str | None = None


class HealthResult(BaseModel):
    status: str = Field(json_schema_extra={"enum": ["ok", "degraded"]})
    version: str
    database_reachable: bool
    active_sessions: int | None
