"""Wire format 1.0: what clients may send and the messages they get when it is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from conftest import start_payload
from session_buddy.mcp.event_models import (
    ErrorResponse,
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
    UserInfo,
    get_session_end_event_schema,
    get_session_end_result_schema,
    get_session_start_event_schema,
    get_session_start_result_schema,
)


def start_error(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        SessionStartEvent.model_validate(start_payload(**overrides))
    return str(caught.value)


def end_error(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        SessionEndEvent.model_validate({"session_id": "s-1", **fields})
    return str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "phrase", "field"),
    [
        ({"event_id": "not-a-uuid"}, "Invalid UUID v4 format", "event_id"),
        ({"event_version": "2.0"}, "Unsupported event version", "event_version"),
        ({"component_name": "bad name"}, "Invalid component_name", "component_name"),
        ({"component_name": "a/b"}, "Invalid component_name", "component_name"),
        ({"event_type": "session_end"}, "Invalid event_type for SessionStartEvent", "event_type"),
        ({"timestamp": "2026-02-06 12:34:56Z"}, "missing time component", "timestamp"),
        ({"timestamp": "2026-02-06T12:34"}, "Invalid ISO 8601 timestamp", "timestamp"),
        ({"timestamp": "2026-13-06T12:34:56Z"}, "Invalid ISO 8601 timestamp", "timestamp"),
        ({"timestamp": "2026-02-06T12:34:67Z"}, "Invalid ISO 8601 timestamp", "timestamp"),
        ({"timestamp": "2026-02-30T12:34:56Z"}, "Invalid ISO 8601 timestamp", "timestamp"),
        ({"timestamp": "2026-02-06T12:34:56+25:00"}, "Invalid ISO 8601 timestamp", "timestamp"),
        ({"pid": 0}, "greater than or equal to 1", "pid"),
        ({"pid": 4194305}, "less than or equal to 4194304", "pid"),
        ({"hostname": "h" * 256}, "at most 255 characters", "hostname"),
        ({"user": {"username": "u" * 101, "home": "/h"}}, "at most 100 characters", "user"),
        (
            {"environment": {"python_version": "3", "platform": "L", "cwd": "/" * 501}},
            "at most 500 characters",
            "environment.cwd",
        ),
        ({"metadata": {"blob": "x" * 70_000}}, "at most 65536 allowed", "metadata"),
        (
            {"metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {}}}}}}}}}}}},
            "at most 10 allowed",
            "metadata",
        ),
        ({"metadata": {"n": float("nan")}}, "must be JSON-serializable", "metadata"),
        ({"metadata": "not a dict"}, "valid dictionary", "metadata"),
    ],
)
def test_bad_start_events_are_rejected_naming_the_field(
    overrides: dict[str, Any], phrase: str, field: str
) -> None:
    message = start_error(**overrides)
    assert phrase in message
    assert field in message


def test_missing_fields_are_named() -> None:
    payload = start_payload()
    del payload["hostname"], payload["pid"]
    with pytest.raises(ValidationError) as caught:
        SessionStartEvent.model_validate(payload)
    missing = {e["loc"][0] for e in caught.value.errors() if e["type"] == "missing"}
    assert missing == {"hostname", "pid"}


def test_valid_start_event_defaults_and_stripping() -> None:
    event = SessionStartEvent.model_validate(
        start_payload(
            user={"username": "  john ", "home": " /home/john "},
            environment={"python_version": "3.13.0", "platform": "Linux", "cwd": " /srv  "},
        )
        | {"event_type": "session_start"}
    )
    assert event.event_type == "session_start"
    assert (event.user.username, event.user.home, event.environment.cwd) == (
        "john",
        "/home/john",
        "/srv",
    )
    assert event.metadata == {}


@pytest.mark.parametrize(
    ("timestamp", "utc"),
    [
        ("2026-02-06T12:34:56.789Z", "2026-02-06T12:34:56.789000+00:00"),
        ("2026-02-06T12:34:56", "2026-02-06T12:34:56+00:00"),
        ("2026-02-06T14:34:56+02:00", "2026-02-06T12:34:56+00:00"),
        ("2026-02-06T07:04:56-0530", "2026-02-06T12:34:56+00:00"),
        ("2026-02-06T12:34:56.123456789Z", "2026-02-06T12:34:56.123456+00:00"),
    ],
)
def test_timestamps_are_real_instants_in_utc(timestamp: str, utc: str) -> None:
    event = SessionStartEvent.model_validate(start_payload(timestamp=timestamp))
    assert event.timestamp == timestamp  # what the client sent is kept
    assert event.started_at.isoformat() == utc


def test_any_rfc_4122_uuid_version_is_accepted() -> None:
    for event_id in (
        "550e8400-e29b-41d4-a716-446655440000",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # version 1
        "{12345678-1234-5678-1234-567812345678}",
    ):
        assert SessionStartEvent.model_validate(start_payload(event_id=event_id))


def test_end_event_rules() -> None:
    event = SessionEndEvent(session_id="s-1", timestamp="2026-02-06T13:45:07.890Z")
    assert (event.event_type, event.metadata) == ("session_end", {})
    assert "Invalid event_type for SessionEndEvent" in end_error(
        event_type="session_start", timestamp="2026-02-06T13:45:00Z"
    )
    assert "Invalid ISO 8601 timestamp" in end_error(timestamp="not-a-timestamp")
    assert "missing time component" in end_error(timestamp="2026-02-06")
    with pytest.raises(ValidationError, match="at most 200 characters"):
        SessionEndEvent(session_id="s" * 201, timestamp="2026-02-06T13:45:00Z")


def test_validator_helpers_are_public() -> None:
    assert SessionStartEvent.validate_event_type("session_start") == "session_start"
    assert SessionEndEvent.validate_event_type("session_end") == "session_end"
    with pytest.raises(ValueError, match="Invalid event_type for SessionStartEvent"):
        SessionStartEvent.validate_event_type("session_end")
    with pytest.raises(ValueError, match="Invalid event_type for SessionEndEvent"):
        SessionEndEvent.validate_event_type("session_start")
    constructed = SessionStartEvent.model_construct(**(start_payload() | {"event_type": "x"}))
    with pytest.raises(ValueError, match="session_start"):
        constructed.validate_consistency()


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"session_id": "s", "status": "bogus"}, "Invalid status"),
        ({"session_id": None, "status": "tracked"}, "session_id required when status is 'tracked'"),
        (
            {"session_id": "s", "status": "tracked", "error": "x"},
            "error must be None when status is 'tracked'",
        ),
        ({"session_id": None, "status": "error"}, "error message required when status is 'error'"),
        (
            {"session_id": "s", "status": "error", "error": "x"},
            "session_id must be None when status is 'error'",
        ),
    ],
)
def test_start_result_consistency(fields: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ValidationError, match=phrase):
        SessionStartResult(**fields)
    with pytest.raises(ValueError, match=phrase):
        SessionStartResult.model_construct(**({"error": None} | fields)).validate_consistency()


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"status": "bogus"}, "Invalid status"),
        ({"status": "error"}, "error message required when status is 'error'"),
        (
            {"status": "ended", "error": "x"},
            "error must be None when status is 'ended' or 'not_found'",
        ),
        (
            {"status": "not_found", "error": "x"},
            "error must be None when status is 'ended' or 'not_found'",
        ),
    ],
)
def test_end_result_consistency(fields: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ValidationError, match=phrase):
        SessionEndResult(session_id="s", **fields)
    constructed = SessionEndResult.model_construct(**({"session_id": "s", "error": None} | fields))
    with pytest.raises(ValueError, match=phrase):
        constructed.validate_consistency()


def test_end_result_requires_a_session_id_string() -> None:
    with pytest.raises(ValidationError):
        SessionEndResult(session_id=None, status="ended")  # type: ignore[arg-type]
    ok = SessionEndResult(
        session_id="s", status="ended", session_status="crashed", duration_seconds=1.5
    )
    assert ok.session_status == "crashed"


def test_json_schemas_are_draft_2020_12() -> None:
    for getter, title, field in [
        (get_session_start_event_schema, "SessionStartEvent", "component_name"),
        (get_session_end_event_schema, "SessionEndEvent", "session_id"),
        (get_session_start_result_schema, "SessionStartResult", "status"),
        (get_session_end_result_schema, "SessionEndResult", "session_status"),
    ]:
        schema = getter()
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"] == title
        assert field in schema["properties"]
        json.dumps(schema)
    assert ErrorResponse.json_schema()["required"] == ["error", "detail"]


def test_json_helpers() -> None:
    event = SessionStartEvent.validate_json(json.dumps(start_payload()))
    assert isinstance(event, SessionStartEvent)
    missing, error = SessionStartEvent.validate_json_safe({"event_id": "nope"})
    assert missing is None and error is not None
    assert UserInfo.validate_json('{"username": "a", "home": "/a"}').username == "a"
