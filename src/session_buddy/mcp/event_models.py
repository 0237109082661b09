"""Wire format version 1.0: session events, their results, and their validation.

Compatible with existing Session-Buddy clients (same field names, defaults, validator
names and message phrases) and stricter where the original was wrong: timestamps must be
real instants and client-supplied sizes are bounded.

Pure: pydantic and the standard library only, no I/O, importable on its own.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from session_buddy.timestamps import parse_timestamp

SCHEMA_VERSION = "1.0"
JSON_SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
COMPONENT_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
METADATA_MAX_BYTES = 64 * 1024
METADATA_MAX_DEPTH = 10
START_STATUSES = ("tracked", "error")


def _absent(value: Any) -> bool:
    """Left out of a dump when unset: results without an error look as in wire v1.0."""
    return value is None


ERROR_CODE_DESCRIPTION = (
    "Set with status 'error', for clients to branch on: invalid_argument, unauthorized, "
    "forbidden, store_unavailable (retry later), conflict (a concurrent change to the same "
    "session; retry), internal_error"
)
END_STATUSES = ("ended", "error", "not_found")

_COMPONENT_NAME = re.compile(COMPONENT_NAME_PATTERN)


class JsonSchemaMixin:
    """JSON Schema export and JSON validation helpers shared by every wire model."""

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The model's JSON Schema (draft 2020-12), tagged with the wire version."""
        model = _as_model_class(cls)
        schema = model.model_json_schema()
        schema["$schema"] = JSON_SCHEMA_DRAFT
        schema["event_version"] = SCHEMA_VERSION
        return schema

    @classmethod
    def validate_json(cls, json_data: str | bytes | dict[str, Any]) -> Any:
        """Validate a JSON document (text or already decoded) into a model instance."""
        model = _as_model_class(cls)
        data = json.loads(json_data) if isinstance(json_data, str | bytes) else json_data
        return model.model_validate(data)

    @classmethod
    def validate_json_safe(
        cls, json_data: str | bytes | dict[str, Any]
    ) -> tuple[Any, ValidationError | None]:
        """Like validate_json, but returns (instance, None) or (None, error)."""
        try:
            return cls.validate_json(json_data), None
        except ValidationError as exc:
            return None, exc


def _as_model_class(cls: type) -> type[BaseModel]:
    if not issubclass(cls, BaseModel):
        raise TypeError(f"{cls.__name__} is not a pydantic model")
    return cls


def check_metadata(value: dict[str, Any], field: str = "metadata") -> dict[str, Any]:
    """Reject metadata that is not plain JSON, too large or too deeply nested."""
    if not value:
        return value
    depth = _depth(value)
    if depth > METADATA_MAX_DEPTH:
        raise ValueError(
            f"{field} is nested {depth} levels deep (at most {METADATA_MAX_DEPTH} allowed)"
        )
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be JSON-serializable: {exc}") from exc
    size = len(encoded.encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(
            f"{field} is {size} bytes serialized (at most {METADATA_MAX_BYTES} allowed)"
        )
    return value


def _depth(value: Any) -> int:
    """Nesting depth of containers; stops counting once past the limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > METADATA_MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EXIT_CODE_MIN, EXIT_CODE_MAX = -(2**63), 2**63 - 1


def check_identity_text(value: str) -> str:
    """Identity fields are plain text: no NUL or other control characters."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"must not contain control characters (found {found.group()!r})")
    return value


def check_exit_code(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata.exit_code`, when given, is an integer in the signed 64-bit range."""
    code = metadata.get("exit_code")
    if code is None:
        return metadata
    if isinstance(code, bool) or not isinstance(code, int):
        raise ValueError(f"metadata.exit_code must be an integer, got {code!r}")
    if not EXIT_CODE_MIN <= code <= EXIT_CODE_MAX:
        raise ValueError(f"metadata.exit_code {code} is outside the signed 64-bit range")
    return metadata


def _check_timestamp(value: str) -> str:
    parse_timestamp(value)
    return value


class UserInfo(BaseModel, JsonSchemaMixin):
    """The user running the shell."""

    username: str = Field(..., max_length=100, description="System username")
    home: str = Field(..., max_length=500, description="Home directory")

    @field_validator("username", "home")
    @classmethod
    def strip_whitespace(cls, v: str) -> str:
        return check_identity_text(v.strip())


class EnvironmentInfo(BaseModel, JsonSchemaMixin):
    """The interpreter and place the shell runs in."""

    python_version: str = Field(..., max_length=100, description="Python version")
    platform: str = Field(..., max_length=255, description="Platform identifier")
    cwd: str = Field(..., max_length=500, description="Current working directory")

    @field_validator("cwd")
    @classmethod
    def strip_whitespace(cls, v: str) -> str:
        return v.strip()

    @field_validator("python_version", "platform", "cwd")
    @classmethod
    def validate_text(cls, v: str) -> str:
        return check_identity_text(v)


def canonical_uuid(v: str) -> str:
    """One id however it is spelled: {…}, urn:uuid:…, 32 hex digits, upper case."""
    try:
        return str(UUID(v))
    except ValueError as exc:
        raise ValueError(f"Invalid UUID v4 format: {v!r}") from exc


class _Event(BaseModel, JsonSchemaMixin):
    """Remembers whether an instance went through validation (model_construct skips it)."""

    _validated: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _mark_validated(self) -> Self:
        self._validated = True
        return self

    @property
    def is_validated(self) -> bool:
        return self._validated

    @field_validator("timestamp", check_fields=False)
    @classmethod
    def validate_timestamp(cls, v: str) -> str:
        return _check_timestamp(v)

    @field_validator("metadata", check_fields=False)
    @classmethod
    def validate_metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_metadata(v)


class SessionStartEvent(_Event):
    """Sent by a shell when it starts."""

    event_version: str = Field(..., max_length=16, description="Wire format version ('1.0')")
    event_id: str = Field(..., max_length=64, description="Unique event id (RFC 4122 UUID)")
    event_type: str = Field(
        default="session_start", max_length=32, description="'session_start' (the default)"
    )
    component_name: str = Field(
        ..., max_length=100, description=f"Component name, {COMPONENT_NAME_PATTERN}"
    )
    shell_type: str = Field(..., max_length=100, description="Shell class, e.g. 'IPythonShell'")
    timestamp: str = Field(..., max_length=64, description="ISO 8601 start time")
    pid: int | None = Field(
        ..., ge=1, le=4194304, description="Process id; null when the client cannot tell"
    )
    user: UserInfo = Field(..., description="{username, home}")
    hostname: str = Field(..., max_length=255, description="Host the shell runs on")
    environment: EnvironmentInfo = Field(..., description="{python_version, platform, cwd}")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Anything else (JSON object, <= 64 KiB)"
    )

    @field_validator("event_id")
    @classmethod
    def validate_uuid(cls, v: str) -> str:
        return canonical_uuid(v)

    @field_validator("shell_type", "hostname")
    @classmethod
    def validate_text(cls, v: str) -> str:
        return check_identity_text(v)

    @field_validator("pid", mode="before")
    @classmethod
    def validate_pid(cls, v: Any) -> Any:
        """An integer, or its ASCII digits as a string (as the original took it)."""
        if isinstance(v, bool):
            raise ValueError("pid must be an integer, not a boolean")
        if isinstance(v, str) and not (v.isascii() and v.strip().isdigit()):
            raise ValueError(f"pid must be an integer, got {v!r}")
        return v

    @field_validator("event_version")
    @classmethod
    def validate_version(cls, v: str) -> str:
        if v != SCHEMA_VERSION:
            raise ValueError(f"Unsupported event version: {v!r} (expected '{SCHEMA_VERSION}')")
        return v

    @field_validator("event_type")
    @classmethod
    def validate_event_type(cls, v: str) -> str:
        if v != "session_start":
            raise ValueError(f"Invalid event_type for SessionStartEvent: {v!r}")
        return v

    @field_validator("component_name")
    @classmethod
    def validate_component_name(cls, v: str) -> str:
        if not _COMPONENT_NAME.fullmatch(v):
            raise ValueError(
                f"Invalid component_name {v!r}: must match pattern {COMPONENT_NAME_PATTERN}"
            )
        return v

    @model_validator(mode="after")
    def validate_consistency(self) -> Self:
        if self.event_type != "session_start":
            raise ValueError(
                f"event_type must be 'session_start' for SessionStartEvent, got {self.event_type!r}"
            )
        return self

    @property
    def started_at(self) -> datetime:
        """The start instant in UTC."""
        return parse_timestamp(self.timestamp)


class SessionEndEvent(_Event):
    """Sent by a shell when it exits."""

    event_type: str = Field(
        default="session_end", max_length=32, description="'session_end' (the default)"
    )
    session_id: str = Field(
        ..., min_length=1, max_length=200, description="What track_session_start returned"
    )
    timestamp: str = Field(..., max_length=64, description="ISO 8601 end time")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="exit_code, exit_reason and anything else"
    )
    event_id: str | None = Field(
        default=None,
        max_length=64,
        description="Unique id of this end (RFC 4122 UUID): a second delivery changes nothing",
    )

    @field_validator("event_id")
    @classmethod
    def validate_uuid(cls, v: str | None) -> str | None:
        return None if v is None else canonical_uuid(v)

    @field_validator("session_id")
    @classmethod
    def validate_session_id(cls, v: str) -> str:
        return check_identity_text(v)

    @field_validator("metadata")
    @classmethod
    def validate_end_metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_exit_code(check_metadata(v))

    @field_validator("event_type")
    @classmethod
    def validate_event_type(cls, v: str) -> str:
        if v != "session_end":
            raise ValueError(f"Invalid event_type for SessionEndEvent: {v!r}")
        return v

    @property
    def ended_at(self) -> datetime:
        """The end instant in UTC."""
        return parse_timestamp(self.timestamp)


def _check_status(v: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise ValueError(f"Invalid status: {v!r} (must be one of {', '.join(allowed)})")
    return v


class SessionStartResult(BaseModel, JsonSchemaMixin):
    """What happened to a start event."""

    session_id: str | None = Field(..., description="The session's id; None on error")
    status: str = Field(..., json_schema_extra={"enum": list(START_STATUSES)})
    error: str | None = None
    error_code: str | None = Field(
        default=None, description=ERROR_CODE_DESCRIPTION, exclude_if=_absent
    )
    warning: str | None = Field(
        default=None,
        description="Set when this event id was already used with other content",
        exclude_if=_absent,
    )

    @field_validator("status")
    @classmethod
    def validate_status(cls, v: str) -> str:
        return _check_status(v, START_STATUSES)

    @model_validator(mode="after")
    def validate_consistency(self) -> Self:
        _check_status(self.status, START_STATUSES)
        if self.status == "error":
            if self.session_id is not None:
                raise ValueError("session_id must be None when status is 'error'")
            if self.error is None:
                raise ValueError("error message required when status is 'error'")
        elif self.status == "tracked":
            if self.session_id is None:
                raise ValueError("session_id required when status is 'tracked'")
            if self.error is not None:
                raise ValueError("error must be None when status is 'tracked'")
        return self


class SessionEndResult(BaseModel, JsonSchemaMixin):
    """What happened to an end event (`status`) and to its session (`session_status`)."""

    session_id: str
    status: str = Field(..., json_schema_extra={"enum": list(END_STATUSES)})
    error: str | None = None
    error_code: str | None = Field(
        default=None, description=ERROR_CODE_DESCRIPTION, exclude_if=_absent
    )
    session_status: str | None = Field(
        default=None, description="The session's final state: ended, crashed, ..."
    )
    duration_seconds: float | None = None
    warning: str | None = Field(default=None, description="Set when the end was clamped")

    @field_validator("status")
    @classmethod
    def validate_status(cls, v: str) -> str:
        return _check_status(v, END_STATUSES)

    @model_validator(mode="after")
    def validate_consistency(self) -> Self:
        _check_status(self.status, END_STATUSES)
        if self.status == "error" and self.error is None:
            raise ValueError("error message required when status is 'error'")
        if self.status in {"ended", "not_found"} and self.error is not None:
            raise ValueError("error must be None when status is 'ended' or 'not_found'")
        return self


class ErrorResponse(BaseModel, JsonSchemaMixin):
    """A generic error answer."""

    error: str
    detail: str
    error_code: str | None = None


def get_session_start_event_schema() -> dict[str, Any]:
    return SessionStartEvent.json_schema()


def get_session_end_event_schema() -> dict[str, Any]:
    return SessionEndEvent.json_schema()


def get_session_start_result_schema() -> dict[str, Any]:
    return SessionStartResult.json_schema()


def get_session_end_result_schema() -> dict[str, Any]:
    return SessionEndResult.json_schema()
