"""SessionEventEmitter in this process: each transport, the async and sync APIs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mcp_helpers import http_server, run_cli
from session_buddy.client import SessionEventEmitter, Spool
from session_buddy.client.spool import PENDING, QUARANTINED, REJECTED
from session_buddy.core import SessionLifecycleManager


async def stored(database_url: str, session_id: str | None) -> dict[str, object]:
    assert session_id is not None
    async with SessionLifecycleManager(database_url) as manager:
        record = await manager.get_session(session_id)
    assert record is not None
    return record


async def events(database_url: str, session_id: str) -> list[dict[str, object]]:
    async with SessionLifecycleManager(database_url) as manager:
        return await manager.session_events(session_id)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.db")


async def test_async_context_manager_on_the_local_store(tmp_path: Path, spool: Spool) -> None:
    database_url = f"sqlite:///{tmp_path / 'local.db'}"
    with pytest.raises(ValueError, match="boom"):
        async with SessionEventEmitter("local", database_url=database_url, spool=spool) as emitter:
            assert emitter.session_id and emitter.session_id.startswith("local-")
            assert await emitter.heartbeat()
            raise ValueError("boom")
    record = await stored(database_url, emitter.session_id)
    assert (record["status"], record["end_reason"]) == ("crashed", "exception:ValueError: boom")
    assert spool.listing((PENDING, REJECTED, QUARANTINED)) == []  # delivered, nothing kept


async def test_stdio_transport(
    tmp_path: Path, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'stdio.db'}"
    monkeypatch.setenv("SESSION_BUDDY_DATABASE_URL", database_url)
    command = f"stdio:{sys.executable} -m session_buddy serve"
    emitter = SessionEventEmitter("piped", server_url=command, spool=spool, timeout=5)
    session_id = await emitter.start()
    assert session_id and session_id.startswith("piped-")
    await emitter.end(exit_code=0, exit_reason="user_exit")
    record = await stored(database_url, session_id)
    assert (record["status"], record["end_reason"]) == ("ended", "user_exit")


def test_sync_api_over_http_and_idempotent_end(tmp_path: Path, spool: Spool) -> None:
    database_url = f"sqlite:///{tmp_path / 'http.db'}"
    with http_server(database_url) as (base, _):
        url = f"{base}/mcp"
        with SessionEventEmitter("synced", server_url=url, spool=spool) as emitter:
            assert emitter.heartbeat_sync()
        emitter.end_sync(exit_code=9)  # the emitter ends once: this sends nothing
        session_id = str(emitter.session_id)
        # A second end that does reach the server changes nothing either.
        again = run_cli(
            database_url,
            "emit",
            "end",
            "--session-id",
            session_id,
            "--exit-code",
            "9",
            "--server-url",
            url,
            SESSION_BUDDY_SPOOL=str(spool.path),
        )
        assert again.stdout.strip() == "ended"
    import asyncio

    record = asyncio.run(stored(database_url, emitter.session_id))
    assert (record["status"], record["exit_code"]) == ("ended", 0)
    log = asyncio.run(events(database_url, session_id))
    assert [(e["event_type"], e["outcome"]) for e in log] == [
        ("session_start", "tracked"),
        ("heartbeat", "recorded"),
        ("session_end", "ended"),
        ("session_end", "duplicate"),  # the CLI's; the emitter's second call never went out
    ]


def test_bad_server_url_never_raises_into_the_shell(
    spool: Spool, capsys: pytest.CaptureFixture[str]
) -> None:
    emitter = SessionEventEmitter("oops", server_url="ftp://nowhere", spool=spool)
    assert emitter.start_sync() is None
    emitter.end_sync()
    assert "start not recorded" in capsys.readouterr().err
