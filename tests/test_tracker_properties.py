"""Property: whatever a client throws at the tracker, it answers and the store stays whole."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import start_payload
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionEndResult, SessionStartResult, SessionTracker
from session_buddy.mcp.event_models import SessionStartEvent

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
start_fields = st.sampled_from(sorted(start_payload()))
timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?\Z"),
    st.text(max_size=40),
)


@st.composite
def start_events(draw: st.DrawFn) -> Any:
    """Valid events, events with fields broken or missing, and plain garbage."""
    kind = draw(st.sampled_from(["valid", "mutated", "garbage", "constructed"]))
    payload = start_payload(
        timestamp=draw(st.datetimes().map(lambda d: d.isoformat())),
        component_name=draw(st.from_regex(r"\A[a-z][a-z0-9_-]{0,7}\Z")),
        pid=draw(st.integers(min_value=1, max_value=4_194_304)),
        metadata=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
    )
    if kind != "valid":
        payload |= {
            "timestamp": draw(timestamps),
            "component_name": draw(st.text(max_size=10)),
            "pid": draw(st.integers(min_value=-5, max_value=5_000_000)),
        }
    if kind == "mutated":
        for field in draw(st.lists(start_fields, min_size=1, max_size=3)):
            if draw(st.booleans()):
                payload[field] = draw(json_values)
            else:
                payload.pop(field, None)
    if kind == "garbage":
        return draw(json_values)
    if kind == "constructed":
        return SessionStartEvent.model_construct(**payload)
    return payload


@st.composite
def end_events(draw: st.DrawFn) -> Any:
    payload: dict[str, Any] = {
        "session_id": draw(st.text(max_size=40) | st.sampled_from(["known"])),
        "timestamp": draw(timestamps),
        "metadata": draw(
            st.fixed_dictionaries(
                {}, optional={"exit_code": json_values, "exit_reason": json_values}
            )
        ),
    }
    if draw(st.booleans()):
        payload["event_type"] = draw(st.sampled_from(["session_end", "session_start"]) | st.text())
    return draw(st.sampled_from([payload, draw(json_values)]))


def test_tracker_never_raises_and_store_stays_consistent(tmp_path: Path) -> None:
    logging.getLogger("session_buddy").setLevel(logging.CRITICAL)
    database = tmp_path / "fuzz.db"
    loop = asyncio.new_event_loop()
    manager = SessionLifecycleManager(f"sqlite:///{database}")
    tracker = SessionTracker(manager)
    tracked: set[str] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(start=start_events(), end=end_events())
    def exercise(start: Any, end: Any) -> None:
        started = loop.run_until_complete(tracker.handle_session_start(start))
        assert isinstance(started, SessionStartResult)
        assert started.status in ("tracked", "error")
        if started.status == "error":
            assert started.error and started.session_id is None
        else:
            assert started.session_id
            tracked.add(started.session_id)
        if isinstance(end, dict) and end.get("session_id") == "known" and started.session_id:
            end = end | {"session_id": started.session_id}
        ended = loop.run_until_complete(tracker.handle_session_end(end))
        assert isinstance(ended, SessionEndResult)
        assert ended.status in ("ended", "not_found", "error")
        assert isinstance(ended.session_id, str)
        assert (ended.error is not None) == (ended.status == "error")

    try:
        exercise()
        loop.run_until_complete(manager.close())
    finally:
        loop.close()
        logging.getLogger("session_buddy").setLevel(logging.NOTSET)

    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute(
            "SELECT session_id, status, ended_us, duration_seconds, component_name FROM sessions"
        ).fetchall()
        assert {row[0] for row in rows} == tracked
        assert len(tracked) > 20, "the generator should produce plenty of valid starts"
        assert any(row[1] != "active" for row in rows), "and some sessions that ended"
        for session_id, status, ended_us, duration, component in rows:
            assert session_id.startswith(component + "-")
            if status == "active":
                assert ended_us is None and duration is None
            else:
                assert ended_us is not None and duration is not None and duration >= 0
        logged = {
            row[0]
            for row in connection.execute(
                "SELECT session_id FROM events WHERE event_type = 'session_start' "
                "AND outcome = 'tracked'"
            )
        }
        assert logged == tracked
    finally:
        connection.close()
