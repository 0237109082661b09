"""Property: SQLite and PostgreSQL answer the same events the same way — accepted with
equal records, or refused with the same field named (DESIGN §2)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import postgres_schema, start_payload
from session_buddy.app.service import SessionService
from session_buddy.app.tools import call_tool
from session_buddy.core import SessionLifecycleManager

# Text that probes the stores: NUL and other controls, non-ASCII digits, long runs.
awkward_text = st.text(
    alphabet=st.sampled_from(["a", "Z", "0", "-", "_", " ", "\x00", "\x07", "\n", "é", "２", "😀"]),
    max_size=12,
)
metadata_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | awkward_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(awkward_text, children, max_size=3)
    ),
    max_leaves=8,
)
exit_codes = st.one_of(
    st.sampled_from([0, 1, 137, 3221225477, 2**63 - 1, -(2**63), 2**63]),
    st.integers(-(2**64), 2**64),
    st.booleans(),
    awkward_text,
    st.floats(allow_nan=False),
)
_examples = itertools.count()


@st.composite
def sessions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A start (each field awkward one time in four) and its end metadata."""
    awkward = {
        "event_id": st.sampled_from([uuid.uuid4().hex, f"{{{uuid.uuid4()}}}", "not-a-uuid"]),
        "component_name": st.sampled_from(["web\n", "we b", "DB_1"]) | awkward_text,
        "pid": st.one_of(st.integers(-2, 5_000_000), st.booleans(), awkward_text),
        "hostname": awkward_text,
        "timestamp": st.sampled_from(["2026-02-06T12:00:00+05:30", "２０２６-02-06T12:00:00Z"]),
    }
    start = start_payload(
        component_name="web",
        hostname="host-1",
        timestamp="2026-02-06T12:00:00Z",
        metadata=draw(st.dictionaries(awkward_text, metadata_values, max_size=3)),
    )
    for field, values in awkward.items():
        if draw(st.integers(0, 3)) == 0:
            start[field] = draw(values)
    end = {"exit_code": draw(exit_codes), "exit_reason": draw(awkward_text)}
    return start, {key: value for key, value in end.items() if draw(st.booleans())}


async def answers(url: str, cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[Any]:
    """Every answer and every stored record, in order, for one store."""
    seen: list[Any] = []
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        for start, end_metadata in cases:
            started = await call_tool(service, "track_session_start", start)
            seen.append(started)
            if started["status"] != "tracked":
                continue
            end = {
                "session_id": started["session_id"],
                "timestamp": "2026-02-06T12:30:00Z",
                "metadata": end_metadata,
            }
            seen.append(await call_tool(service, "track_session_end", end))
            record = await call_tool(service, "get_session", {"session_id": started["session_id"]})
            seen.append({key: value for key, value in record.items() if key != "last_seen_at"})
    return seen


def test_sqlite_and_postgresql_answer_alike(tmp_path: Path) -> None:
    with postgres_schema() as postgres_url:
        sqlite_url = f"sqlite:///{tmp_path / 'agree.db'}"

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(st.lists(sessions(), min_size=1, max_size=4))
        def check(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
            # Each example in a host of its own, so earlier examples never supersede it.
            host = f"example-{next(_examples)}"
            cases = [
                (start | {"hostname": host} if start["hostname"] == "host-1" else start, end)
                for start, end in cases
            ]
            on_sqlite = asyncio.run(answers(sqlite_url, cases))
            on_postgres = asyncio.run(answers(postgres_url, cases))
            assert on_sqlite == on_postgres

        check()
