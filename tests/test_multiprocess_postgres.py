"""Three server processes on one PostgreSQL database, hammered concurrently."""

from __future__ import annotations

import asyncio
import random
import uuid
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import psycopg
import pytest
from mcp import Client

from conftest import postgres_schema, start_payload
from mcp_helpers import http_client, http_server, structured

SERVERS = 3
STARTS = 60
REPEATS = 3  # every start event is sent this many times, to different servers


async def test_three_servers_share_one_database_correctly() -> None:
    with postgres_schema() as url, ExitStack() as stack:
        bases = [stack.enter_context(http_server(url))[0] for _ in range(SERVERS)]
        async with AsyncExitStack() as clients_stack:
            clients = {
                base: await clients_stack.enter_async_context(http_client(base)) for base in bases
            }
            await exercise(url, bases, clients)


async def exercise(url: str, bases: list[str], clients: dict[str, Client]) -> None:
    """Concurrent starts (each sent REPEATS times), heartbeats and doubled ends, spread
    over every server; then the database must agree with every acknowledgement."""
    events = [
        start_payload(
            event_id=str(uuid.uuid4()),
            component_name="multi",
            timestamp="2026-02-06T12:00:00.5Z",
            pid=10_000 + n,
        )
        for n in range(STARTS)
    ]
    sends = [(events[n], bases[(n + r) % SERVERS]) for n in range(STARTS) for r in range(REPEATS)]
    random.shuffle(sends)
    gate = asyncio.Semaphore(24)

    async def send(tool: str, arguments: dict[str, Any], base: str) -> dict[str, Any]:
        async with gate:
            return structured(await clients[base].call_tool(tool, arguments))

    started = await asyncio.gather(
        *(send("track_session_start", event, base) for event, base in sends)
    )
    ids_by_event: dict[str, set[str]] = {}
    for (event, _), result in zip(sends, started, strict=True):
        assert result["status"] == "tracked", result
        ids_by_event.setdefault(event["event_id"], set()).add(result["session_id"])
    assert all(len(ids) == 1 for ids in ids_by_event.values()), "a retried start got two ids"
    session_ids = [ids.pop() for ids in ids_by_event.values()]
    assert len(set(session_ids)) == STARTS
    assert "multi-20260206-120000" in session_ids

    exit_codes = {sid: random.choice([0, 0, 1]) for sid in session_ids}
    beats = [
        send("track_session_heartbeat", {"session_id": sid}, bases[i % SERVERS])
        for i, sid in enumerate(session_ids)
    ]
    ends = [
        send(
            "track_session_end",
            {
                "session_id": sid,
                "timestamp": "2026-02-06T12:10:00.5Z",
                "metadata": {"exit_code": exit_codes[sid]},
            },
            bases[(i + r) % SERVERS],
        )
        for i, sid in enumerate(session_ids)
        for r in range(2)
    ]
    results = await asyncio.gather(*beats, *ends)
    for result in results[len(beats) :]:
        assert result["status"] == "ended"
        expected = "crashed" if exit_codes[result["session_id"]] else "ended"
        assert result["session_status"] == expected
        assert result["duration_seconds"] == pytest.approx(600.0)

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT session_id, event_id, status FROM sessions").fetchall()
        log = connection.execute(
            "SELECT event_type, session_id, event_id, outcome FROM events"
        ).fetchall()
    assert len(rows) == STARTS
    assert {row[1] for row in rows} == {e["event_id"] for e in events}
    for session_id, _, status in rows:
        assert status == ("crashed" if exit_codes[session_id] else "ended")
    starts = [entry for entry in log if entry[0] == "session_start"]
    assert (
        sorted(e[3] for e in starts)
        == ["duplicate"] * (STARTS * (REPEATS - 1)) + ["tracked"] * STARTS
    )
    tracked = {(e[1], e[2]) for e in starts if e[3] == "tracked"}
    assert tracked == {(row[0], row[1]) for row in rows}
    applied_ends = [e for e in log if e[0] == "session_end" and e[3] != "duplicate"]
    assert sorted(e[1] for e in applied_ends) == sorted(session_ids)  # each exactly once
    for _, session_id, _, outcome in applied_ends:
        assert outcome == ("crashed" if exit_codes[session_id] else "ended")
    repeated = [e for e in log if e[0] == "session_end" and e[3] == "duplicate"]
    assert len(repeated) == STARTS
