"""Session semantics (DESIGN §3) through SessionTracker and the manager, on real SQLite."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import end_event, event_log, start_event, start_payload
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionStartEvent, SessionTracker
from session_buddy.timestamps import now_iso

START = "2026-02-06T12:34:56.789Z"


async def test_64_concurrent_starts_in_one_second_get_distinct_ids(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    events = [
        start_event(timestamp=f"2026-02-06T12:34:56.{i:03d}Z", pid=1000 + i) for i in range(64)
    ]
    results = await asyncio.gather(*(tracker.handle_session_start(e) for e in events))
    ids = [r.session_id for r in results]
    assert all(r.status == "tracked" for r in results)
    assert len(set(ids)) == 64
    expected = {"mahavishnu-20260206-123456"} | {
        f"mahavishnu-20260206-123456-{n}" for n in range(2, 65)
    }
    assert set(ids) == expected
    page = await manager.list_sessions(limit=100)
    assert len(page["sessions"]) == 64
    assert {s["status"] for s in page["sessions"]} == {"active"}


async def test_same_start_sent_ten_times_concurrently_is_one_session(
    tracker: SessionTracker, manager: SessionLifecycleManager, database_url: str
) -> None:
    event = start_event()
    results = await asyncio.gather(*(tracker.handle_session_start(event) for _ in range(10)))
    assert {r.session_id for r in results} == {"mahavishnu-20260206-123456"}
    assert len((await manager.list_sessions())["sessions"]) == 1
    outcomes = sorted(row["outcome"] for row in await event_log(manager))
    assert outcomes == ["duplicate"] * 9 + ["tracked"]


async def test_event_id_spelling_does_not_defeat_idempotency(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    event_id = "550E8400-E29B-41D4-A716-446655440000"
    first = await tracker.handle_session_start(start_event(event_id=event_id))
    again = await tracker.handle_session_start(start_event(event_id=event_id.lower()))
    assert first.session_id == again.session_id
    assert len((await manager.list_sessions())["sessions"]) == 1


async def test_end_twice_returns_ended_and_changes_nothing(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    started = await tracker.handle_session_start(start_event())
    assert started.session_id
    first = await tracker.handle_session_end(
        end_event(started.session_id, "2026-02-06T13:00:00Z", exit_code=0)
    )
    before = await manager.get_session(started.session_id)
    second = await tracker.handle_session_end(
        end_event(started.session_id, "2026-02-06T14:00:00Z", exit_code=1)
    )
    after = await manager.get_session(started.session_id)
    assert (first.status, first.session_status) == ("ended", "ended")
    assert (second.status, second.session_status) == ("ended", "ended")
    assert second.duration_seconds == first.duration_seconds
    assert after == before


async def test_end_of_unknown_session_is_not_found_and_logged(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    result = await tracker.handle_session_end(end_event("ghost-20260101-000000", START))
    assert result.status == "not_found"
    assert result.session_id == "ghost-20260101-000000"
    assert result.error is None
    [row] = await event_log(manager)
    assert (row["event_type"], row["session_id"], row["outcome"]) == (
        "session_end",
        "ghost-20260101-000000",
        "not_found",
    )
    assert json.loads(row["payload"])["session_id"] == "ghost-20260101-000000"


async def test_end_before_start_is_clamped_with_a_warning(
    tracker: SessionTracker, manager: SessionLifecycleManager, caplog: pytest.LogCaptureFixture
) -> None:
    started = await tracker.handle_session_start(start_event())
    assert started.session_id
    with caplog.at_level(logging.WARNING):
        result = await tracker.handle_session_end(
            end_event(started.session_id, "2026-02-06T12:00:00Z")
        )
    assert (result.status, result.session_status) == ("ended", "ended")
    assert result.duration_seconds == 0.0
    assert result.warning and "clamped" in result.warning
    assert any("clamped" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    stored = await manager.get_session(started.session_id)
    assert stored and stored["duration_seconds"] == 0.0 and stored["status"] == "ended"


@pytest.mark.parametrize(
    ("metadata", "state", "reason"),
    [
        ({"exit_code": 0}, "ended", None),
        ({"exit_reason": "user_exit"}, "ended", "user_exit"),
        ({"exit_code": 1}, "crashed", "exit_code 1"),
        ({"exit_code": 3221225477}, "crashed", "exit_code 3221225477"),  # a Windows crash
        ({"exit_code": -(2**63)}, "crashed", f"exit_code {-(2**63)}"),
        ({"exit_reason": "crash"}, "crashed", "crash"),
        ({"exit_reason": "exception", "exit_code": 0}, "crashed", "exception"),
        ({"exit_reason": "signal:SIGTERM"}, "crashed", "signal:SIGTERM"),
        ({"exit_reason": "killed"}, "crashed", "killed"),
        ({"exit_reason": "moved_to_the_moon"}, "ended", "moved_to_the_moon"),
        ({"exit_reason": "Error: disk full"}, "crashed", "Error: disk full"),
        ({"exit_reason": "signed_out"}, "ended", "signed_out"),
        ({"exit_reason": "sign_off"}, "ended", "sign_off"),
        ({"exit_reason": "errorless"}, "ended", "errorless"),
        ({"exit_reason": "terminated_normally"}, "ended", "terminated_normally"),
    ],
)
async def test_crash_classification(
    tracker: SessionTracker,
    manager: SessionLifecycleManager,
    metadata: dict[str, object],
    state: str,
    reason: str | None,
) -> None:
    started = await tracker.handle_session_start(start_event())
    assert started.session_id
    result = await tracker.handle_session_end(
        end_event(started.session_id, "2026-02-06T12:35:56.789Z", **metadata)
    )
    assert (result.status, result.session_status) == ("ended", state)
    assert result.duration_seconds == pytest.approx(60.0)
    stored = await manager.get_session(started.session_id)
    assert stored is not None
    assert (stored["status"], stored["end_reason"]) == (state, reason)
    assert stored["end_metadata"] == metadata


async def test_offsets_are_converted_to_utc(tracker: SessionTracker) -> None:
    result = await tracker.handle_session_start(start_event(timestamp="2026-02-06T14:34:56+02:00"))
    assert result.session_id == "mahavishnu-20260206-123456"
    naive = await tracker.handle_session_start(
        start_event(component_name="oneiric", timestamp="2026-02-06T12:34:56")
    )
    assert naive.session_id == "oneiric-20260206-123456"


async def test_heartbeat_refreshes_last_seen(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    started = await tracker.handle_session_start(start_event())
    assert started.session_id
    beat = await manager.heartbeat(started.session_id, "2026-02-06T12:40:00Z")
    assert (beat.found, beat.session_status) == (True, "active")
    stored = await manager.get_session(started.session_id)
    assert stored and stored["last_seen_at"] == "2026-02-06T12:40:00.000000Z"
    # An older heartbeat (replayed late) never moves last_seen backwards.
    await manager.heartbeat(started.session_id, "2026-02-06T12:35:00Z")
    stored = await manager.get_session(started.session_id)
    assert stored and stored["last_seen_at"] == "2026-02-06T12:40:00.000000Z"
    missing = await manager.heartbeat("nobody-20260101-000000")
    assert not missing.found


async def test_silent_session_is_abandoned_at_last_activity_then_ended_late(
    database_url: str,
) -> None:
    server_clock = [time.time_ns() // 1000]  # moved by the test, not slept through
    async with SessionLifecycleManager(
        database_url, abandon_after=60, clock=lambda: server_clock[0]
    ) as manager:
        tracker = SessionTracker(manager)
        started = await tracker.handle_session_start(start_event())
        quiet = await tracker.handle_session_start(start_event(component_name="quiet", pid=2))
        assert started.session_id and quiet.session_id
        await manager.heartbeat(started.session_id, "2026-02-06T13:00:00Z")
        server_clock[0] += 59_000_000
        assert await manager.reap() == []  # reads and early reaps never abandon
        server_clock[0] += 2_000_000  # 61 s after the last event: longer than abandon_after
        await manager.heartbeat(quiet.session_id)  # still alive: not reaped
        reaped = await manager.reap()
        assert reaped == [started.session_id]
        stored = await manager.get_session(started.session_id)
        assert stored is not None
        assert stored["status"] == "abandoned"
        assert stored["ended_at"] == "2026-02-06T13:00:00.000000Z"
        # The evidence: when the server last heard from it (its own clock).
        assert stored["end_reason"].startswith("timeout (no event since 20")
        assert stored["end_reason"].endswith("Z)")
        late = await tracker.handle_session_end(
            end_event(started.session_id, "2026-02-06T14:34:56.789Z", exit_code=3)
        )
        assert (late.status, late.session_status) == ("ended", "crashed")
        assert late.duration_seconds == pytest.approx(7200.0)
        stored = await manager.get_session(started.session_id)
        assert stored and stored["status"] == "crashed"


async def test_reap_abandons_local_sessions_whose_process_is_gone(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    here = platform.node()
    gone = await tracker.handle_session_start(
        start_event(hostname=here, pid=child.pid, timestamp="2026-02-06T12:00:00Z")
    )
    alive = await tracker.handle_session_start(
        start_event(hostname=here, pid=os.getpid(), timestamp=now_iso())
    )
    reused = await tracker.handle_session_start(
        # This pid is alive, but its process was created long after this session began.
        start_event(
            hostname=here, pid=os.getpid(), timestamp="2020-01-01T00:00:00Z", component_name="older"
        )
    )
    elsewhere = await tracker.handle_session_start(
        start_event(hostname="not-" + here, pid=child.pid, timestamp="2026-02-06T12:00:00Z")
    )
    reaped = await manager.reap()
    assert sorted(reaped) == sorted([gone.session_id, reused.session_id])
    states = {
        sid: (await manager.get_session(sid) or {}).get("end_reason")
        for sid in (gone.session_id, alive.session_id, reused.session_id, elsewhere.session_id)
        if sid
    }
    assert states == {
        gone.session_id: f"process_gone (pid {child.pid} exited; "
        "last activity start at 2026-02-06T12:00:00.000000Z)",
        alive.session_id: None,
        reused.session_id: "pid_reused",
        elsewhere.session_id: None,
    }


async def test_new_start_from_same_host_and_pid_supersedes_the_old_session(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    old = await tracker.handle_session_start(start_event(timestamp="2026-02-06T10:00:00Z"))
    await manager.heartbeat(old.session_id or "", "2026-02-06T11:00:00Z")
    new = await tracker.handle_session_start(start_event(timestamp="2026-02-06T12:00:00Z"))
    assert old.session_id and new.session_id and old.session_id != new.session_id
    stored_old = await manager.get_session(old.session_id)
    assert stored_old is not None
    assert (stored_old["status"], stored_old["end_reason"]) == (
        "abandoned",
        f"superseded by {new.session_id}",
    )
    assert stored_old["ended_at"] == "2026-02-06T11:00:00.000000Z"
    assert stored_old["duration_seconds"] == pytest.approx(3600.0)
    # A late heartbeat of the superseded session does not bring it back.
    beat = await manager.heartbeat(old.session_id, "2026-02-06T12:30:00Z")
    assert (beat.found, beat.session_status) == (True, "abandoned")
    stored_old = await manager.get_session(old.session_id)
    assert stored_old and stored_old["status"] == "abandoned"
    stored_new = await manager.get_session(new.session_id)
    assert stored_new and stored_new["status"] == "active"


async def test_every_accepted_event_is_in_the_event_log(
    tracker: SessionTracker, manager: SessionLifecycleManager, database_url: str
) -> None:
    started = await tracker.handle_session_start(start_event(metadata={"tty": "pts/1"}))
    assert started.session_id
    await manager.heartbeat(started.session_id, "2026-02-06T12:40:00Z")
    await tracker.handle_session_end(end_event(started.session_id, "2026-02-06T13:00:00Z"))
    await tracker.handle_session_end(end_event(started.session_id, "2026-02-06T13:00:00Z"))
    rejected = await tracker.handle_session_start({"event_version": "9.9"})  # type: ignore[arg-type]
    assert rejected.status == "error"
    rows = await event_log(manager)
    assert [(r["event_type"], r["outcome"]) for r in rows] == [
        ("session_start", "tracked"),
        ("heartbeat", "recorded"),
        ("session_end", "ended"),
        ("session_end", "duplicate"),
    ]
    assert json.loads(rows[0]["payload"])["metadata"] == {"tty": "pts/1"}


async def test_list_sessions_filters_and_pages_newest_first(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    for i in range(7):
        component = "alpha" if i % 2 else "beta"
        result = await tracker.handle_session_start(
            start_event(
                component_name=component,
                timestamp=f"2026-02-0{i + 1}T08:00:00Z",
                pid=100 + i,
                user={"username": f"u{i % 3}", "home": "/h"},
            )
        )
        if i < 3 and result.session_id:
            await tracker.handle_session_end(end_event(result.session_id, "2026-02-10T00:00:00Z"))
    seen: list[str] = []
    cursor = None
    while True:
        page = await manager.list_sessions(limit=3, cursor=cursor)
        seen += [s["started_at"][:10] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"2026-02-0{d}" for d in range(7, 0, -1)]
    active_alpha = await manager.list_sessions(status="active", component_name="alpha")
    assert [s["session_id"] for s in active_alpha["sessions"]] == [
        "alpha-20260206-080000",
        "alpha-20260204-080000",
    ]
    window = await manager.list_sessions(
        started_after="2026-02-02T00:00:00Z", started_before="2026-02-04T00:00:00Z"
    )
    assert [s["started_at"][:10] for s in window["sessions"]] == ["2026-02-03", "2026-02-02"]
    assert len((await manager.list_sessions(username="u1"))["sessions"]) == 2
    with pytest.raises(ValueError, match="Invalid status filter"):
        await manager.list_sessions(status="sleeping")
    with pytest.raises(ValueError, match="Invalid limit"):
        await manager.list_sessions(limit=501)
    with pytest.raises(ValueError, match="Invalid cursor"):
        await manager.list_sessions(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="Invalid started_after"):
        await manager.list_sessions(started_after="yesterday")


async def test_session_stats_per_group(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    durations = [10, 20, 30, 40]
    for i, seconds in enumerate(durations):
        result = await tracker.handle_session_start(
            start_event(component_name="alpha", timestamp=f"2026-02-06T10:00:0{i}Z", pid=10 + i)
        )
        assert result.session_id
        await tracker.handle_session_end(
            end_event(result.session_id, f"2026-02-06T10:00:{i + seconds:02d}Z")
        )
    crashed = await tracker.handle_session_start(
        start_event(component_name="alpha", timestamp="2026-02-06T11:00:00Z", pid=20)
    )
    await tracker.handle_session_end(
        end_event(crashed.session_id or "", "2026-02-06T11:00:05Z", exit_code=2)
    )
    await tracker.handle_session_start(
        start_event(component_name="beta", timestamp="2026-02-06T11:00:00Z", pid=30)
    )
    stats = await manager.session_stats()
    assert stats["group_by"] == "component_name"
    alpha, beta = stats["groups"]
    assert alpha == {
        "key": "alpha",
        "total": 5,
        "active": 0,
        "ended": 4,
        "crashed": 1,
        "abandoned": 0,
        "duration_mean": 25.0,
        "duration_p50": 20.0,
        "duration_p95": 40.0,
        "crash_rate": 0.2,
        "abandon_rate": 0.0,
    }
    assert (beta["key"], beta["total"], beta["active"], beta["crash_rate"]) == ("beta", 1, 1, None)
    later = await manager.session_stats(group_by="hostname", since="2026-02-06T10:30:00Z")
    assert [(g["key"], g["total"]) for g in later["groups"]] == [("server01", 2)]
    with pytest.raises(ValueError, match="Invalid group_by"):
        await manager.session_stats(group_by="pid")


async def test_windowed_stats_and_the_overview_agree_with_all_time_stats(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    """Within a window percentiles come from the window's durations, over all time from
    the index: the same sessions give the same answers either way."""
    base = datetime(2026, 2, 6, 8, 0, tzinfo=UTC)
    for i in range(23):
        started = base + timedelta(minutes=17 * i)
        result = await tracker.handle_session_start(
            start_event(
                component_name=("alpha", "beta", "gamma")[i % 3],
                timestamp=started.isoformat(),
                pid=100 + i,
                hostname=f"h{i % 2}",
            )
        )
        assert result.session_id
        if i % 7 == 6:
            continue  # still active
        took = timedelta(seconds=(0.4, 7, 45, 290, 1300, 9000)[i % 6] + i)
        code = 1 if i % 5 == 4 else 0
        await tracker.handle_session_end(
            end_event(result.session_id, (started + took).isoformat(), exit_code=code)
        )
    since = "2026-01-01T00:00:00Z"
    for group_by in (None, "component_name", "hostname"):
        for bucket in (None, "hour"):
            whole = await manager.session_stats(group_by, bucket=bucket)
            windowed = await manager.session_stats(group_by, since, bucket=bucket)
            assert rounded(windowed["groups"]) == rounded(whole["groups"])
    overview = await manager.overview(since, bucket="hour")
    per_component = await manager.session_stats("component_name")
    assert rounded(overview["groups"]) == rounded(per_component["groups"])
    [total] = (await manager.session_stats(None))["groups"]
    assert rounded([overview["total"]]) == rounded([total])
    hourly = await manager.session_stats(None, bucket="hour", percentiles=False)
    assert rounded(overview["buckets"]) == rounded(hourly["groups"])
    assert [(b["label"], b["count"]) for b in overview["histogram"]] == [
        ("< 1 s", 1), ("< 10 s", 1), ("< 1 min", 5), ("< 5 min", 1), ("< 15 min", 2),
        ("< 1 h", 3), ("< 4 h", 3), ("< 1 day", 0), ("≥ 1 day", 0),
    ]  # fmt: skip
    assert total["ended"] == 16
    assert len(overview["finished"]) == 20
    assert {s["status"] for s in overview["finished"]} == {"ended", "crashed"}


def rounded(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stats groups with means rounded: sums taken in another order differ in the last
    bits."""
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in g.items()} for g in groups]


async def test_state_survives_reopening_the_file(database_url: str, tmp_path: Path) -> None:
    async with SessionLifecycleManager(database_url) as manager:
        result = await SessionTracker(manager).handle_session_start(start_event())
    async with SessionLifecycleManager(database_url) as reopened:
        stored = await reopened.get_session(result.session_id or "")
        assert stored and stored["status"] == "active"


async def test_external_ids_link_resumed_sessions(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    def claude(timestamp: str, pid: int) -> SessionStartEvent:
        return start_event(
            component_name="claude-code",
            timestamp=timestamp,
            pid=pid,
            metadata={"external_id": "c0ffee-1234", "source": "startup"},
        )

    first = await tracker.handle_session_start(claude("2026-02-06T10:00:00Z", 100))
    repeat = await tracker.handle_session_start(claude("2026-02-06T10:00:05Z", 100))
    assert repeat.session_id == first.session_id  # running: nothing changes
    assert len((await manager.list_sessions())["sessions"]) == 1
    await tracker.handle_session_end(end_event(first.session_id or "", "2026-02-06T11:00:00Z"))
    resumed = await tracker.handle_session_start(claude("2026-02-06T12:00:00Z", 200))
    assert resumed.session_id not in (None, first.session_id)
    stored = await manager.get_session(resumed.session_id or "")
    assert stored is not None
    assert stored["external_id"] == "c0ffee-1234"
    assert stored["previous_session_id"] == first.session_id
    found = await manager.list_sessions(external_id="c0ffee-1234", status="active")
    assert [s["session_id"] for s in found["sessions"]] == [resumed.session_id]
    concurrent = await asyncio.gather(
        *(tracker.handle_session_start(claude("2026-02-06T12:00:01Z", 300 + i)) for i in range(8))
    )
    assert {r.session_id for r in concurrent} == {resumed.session_id}


async def test_a_session_without_a_known_pid_is_kept_and_never_reaped_by_pid(
    tracker: SessionTracker, manager: SessionLifecycleManager
) -> None:
    """A hook that cannot tell its process sends pid null: stored as none, never reaped
    or superseded by pid (two such sessions on one host stay apart)."""
    here = platform.node()
    first = await tracker.handle_session_start(start_payload(pid=None, hostname=here))  # type: ignore[arg-type]
    second = await tracker.handle_session_start(  # type: ignore[arg-type]
        start_payload(pid=None, hostname=here, timestamp=now_iso())
    )
    assert first.status == second.status == "tracked"
    assert await manager.reap() == []
    for started in (first, second):
        stored = await manager.get_session(started.session_id or "")
        assert stored is not None and (stored["pid"], stored["status"]) == (None, "active")
    missing = await tracker.handle_session_start(  # type: ignore[arg-type]
        {k: v for k, v in start_payload().items() if k != "pid"}
    )
    assert missing.status == "error" and "pid" in (missing.error or "")  # still required
