"""Usage per session in the store itself, on a real SQLite file and a real PostgreSQL
schema: records and starts racing from two servers, and retention."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from psycopg.rows import dict_row

from conftest import postgres_schema, start_payload
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager, usage
from session_buddy.core.store.postgres import PostgresTx, conninfo_from_url
from session_buddy.core.usage import Usage
from session_buddy.timestamps import now_micros


def reported(requests: int, at_us: int) -> Usage:
    usage = Usage()
    for _ in range(requests):
        usage.add("api_requests", 1)
        usage.add("cost_usd", 0.5)
        usage.detail("model", "claude-opus-4-8", cost=0.5)
    usage.seen(at_us)
    return usage


async def test_records_and_starts_from_two_servers_all_meet(database_url: str) -> None:
    """Two managers (two servers' pools): for each client id, a start on one and its
    records on the other at the same moment; no usage is left waiting for a start that
    has already come."""
    clients = [str(uuid.uuid4()) for _ in range(40)]
    async with (
        SessionLifecycleManager(database_url) as first,
        SessionLifecycleManager(database_url) as second,
    ):
        starting = SessionService(first)

        async def start(client: str) -> str:
            started = await starting.start(start_payload(metadata={"external_id": client}))
            assert started.session_id is not None, started.error
            return started.session_id

        async def report(client: str) -> None:
            await second.record_usage({client: reported(2, now_micros())})

        work = [start(client) for client in clients] + [report(client) for client in clients]
        await asyncio.gather(*work)
        waiting = await first.store.read(
            lambda tx: tx.all("SELECT external_key FROM session_usage WHERE session_id IS NULL")
        )
        page = await first.list_sessions(limit=100)
    assert waiting == []
    assert sorted(s["usage"]["api_requests"] for s in page["sessions"]) == [2] * 40


async def test_prune_takes_a_sessions_usage_and_usage_that_waited_too_long(
    database_url: str,
) -> None:
    async with SessionLifecycleManager(database_url) as manager:
        service = SessionService(manager)
        client = str(uuid.uuid4())
        started = await service.start(start_payload(metadata={"external_id": client}))
        assert started.session_id is not None
        await manager.record_usage({client: reported(3, now_micros())})
        await manager.record_usage({"never-started": reported(1, now_micros())})
        await service.end({"session_id": started.session_id, "timestamp": "2026-02-06T13:00:00Z"})
        assert (await manager.get_session(started.session_id) or {})["usage"]["api_requests"] == 3
        report = await manager.prune("2999-01-01T00:00:00Z")
        assert report.sessions == 1
        left = await manager.store.read(
            lambda tx: [
                tx.one(f"SELECT COUNT(*) AS n FROM {table}")
                for table in ("session_usage", "usage_details")
            ]
        )
    assert [int(row["n"]) for row in left if row] == [0, 0]


async def test_a_start_waits_for_records_written_beside_it_on_postgresql() -> None:
    """Server A holds records of a client id that has no session yet, uncommitted, while
    server B starts that session: B waits for A's commit, then takes the records."""
    with postgres_schema() as url:
        async with SessionLifecycleManager(url) as manager:
            client = str(uuid.uuid4())
            with psycopg.connect(
                conninfo_from_url(url), row_factory=dict_row, cursor_factory=psycopg.RawCursor
            ) as holding:
                went = usage.record(PostgresTx(holding.cursor()), client, reported(2, now_micros()))
                assert went is None  # waiting for its start
                starting = asyncio.create_task(
                    SessionService(manager).start(start_payload(metadata={"external_id": client}))
                )
                await asyncio.sleep(0.5)
                assert not starting.done()  # the start waits for the records' transaction
                holding.commit()
            started = await starting
            assert started.session_id is not None
            record = await manager.get_session(started.session_id)
    assert record is not None and record["usage"]["api_requests"] == 2


async def test_usage_that_waits_longer_than_seven_days_for_its_start_goes(
    database_url: str,
) -> None:
    clock = [now_micros()]
    async with SessionLifecycleManager(database_url, clock=lambda: clock[0]) as manager:

        async def waiting() -> int:
            row = await manager.store.read(
                lambda tx: tx.one("SELECT COUNT(*) AS n FROM session_usage")
            )
            return int(row["n"]) if row else -1

        await manager.record_usage({"never-started": reported(1, clock[0])})
        await manager.upkeep(None)
        assert await waiting() == 1
        clock[0] += 8 * 86_400_000_000
        await manager.upkeep(None)
        assert await waiting() == 0
