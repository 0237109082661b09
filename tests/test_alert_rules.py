"""What each rule holds for, on both stores: filters, the stuck rule's p90 of the
component's own clean sessions, and one alert per rule and subject until it clears."""

from __future__ import annotations

from typing import Any

import pytest

from session_buddy.core import SessionLifecycleManager, alerts
from session_buddy.core.records import SessionOrigin
from session_buddy.core.transitions import NewSession, SessionEnd

SECOND = 1_000_000
NOW = 1_780_000_000 * SECOND


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def new(component: str, started_us: int, number: int, cwd: str = "/srv/app") -> NewSession:
    origin = SessionOrigin(
        event_id=f"{component}-{number}",
        component_name=component,
        shell_type="Shell",
        pid=None,
        hostname="h",
        username="ann",
        cwd=cwd,
        python_version="3",
        platform="L",
    )
    return NewSession(origin, "/home/ann", started_us, {}, "{}")


def rule(**given: Any) -> alerts.AlertRule:
    return alerts.AlertRule(
        **({"name": "r", "condition": "stuck", "channels": ("json://x/y",)} | given)
    )


def test_a_cwd_prefix_matches_whole_path_components() -> None:
    session = {"component_name": "c", "hostname": "h", "username": "u"}
    under = rule(cwd_prefix="/srv/app")
    assert under.matches(session | {"cwd": "/srv/app"})
    assert under.matches(session | {"cwd": "/srv/app/tests"})
    assert not under.matches(session | {"cwd": "/srv/apple"})
    assert not rule(hostname="other").matches(session | {"cwd": "/"})


@pytest.fixture
async def clocked(database_url: str) -> Any:
    clock = Clock()
    async with SessionLifecycleManager(database_url, clock=clock) as manager:
        yield manager, clock


async def finish(
    manager: SessionLifecycleManager, component: str, numbers: range, took: int
) -> None:
    for number in numbers:
        started = NOW - 3600 * SECOND + number * SECOND
        outcome = await manager.start_session(new(component, started, number))
        end = SessionEnd(outcome.session_id, started + took * SECOND, {}, "{}")
        await manager.end_session(end)


async def assess(manager: SessionLifecycleManager, *every: alerts.AlertRule) -> alerts.Assessment:
    now = manager.clock()
    typical = await manager.store.read(alerts.typical_durations)
    return await manager.store.read(lambda tx: alerts.assess(tx, list(every), now, typical))


async def test_stuck_is_k_times_the_p90_of_the_components_clean_sessions(clocked: Any) -> None:
    manager, clock = clocked
    await finish(manager, "build", range(19), took=10)
    running = await manager.start_session(new("build", NOW - 40 * SECOND, 100))
    stuck = rule(name="stuck", factor=3.0)
    await manager.store.write(lambda tx: alerts.save_rule(tx, stuck))
    assert (await assess(manager, stuck)).opening == []  # 19 clean sessions: too few to judge
    await finish(manager, "build", range(19, 20), took=10)
    [firing] = (await assess(manager, stuck)).opening
    assert firing.subject == running.session_id
    assert firing.facts["reason"] == "running 40 s, over 3 × the p90 of its component (10 s)"
    assert (await assess(manager, rule(name="stuck", factor=5.0))).opening == []
    found = await assess(manager, stuck)
    await manager.store.write(lambda tx: alerts.apply(tx, found, clock()))
    assert (await assess(manager, stuck)).opening == []  # open already: once
    await manager.end_session(SessionEnd(running.session_id, NOW, {}, "{}"))
    [clearing] = (await assess(manager, stuck)).clearing
    assert not clearing.quiet


async def test_a_crash_rate_counts_only_the_sessions_its_filters_name(clocked: Any) -> None:
    manager, _ = clocked
    for number in range(10):
        cwd = "/srv/app/tests" if number < 5 else "/srv/apple"
        started = NOW - 600 * SECOND + number * SECOND
        outcome = await manager.start_session(new("svc", started, number, cwd=cwd))
        crashed = number in (0, 5, 6, 7, 8, 9)  # 1 of 5 under /srv/app, 5 of 5 beside it
        metadata = {"exit_code": 1} if crashed else {}
        await manager.end_session(SessionEnd(outcome.session_id, started + SECOND, metadata, "{}"))
    narrow = rule(condition="crash-rate", below=90.0, cwd_prefix="/srv/app")
    [firing] = (await assess(manager, narrow)).opening
    assert firing.subject == "component:svc"
    assert firing.facts["reason"].startswith("crash-free 80.0% over the last hour (1 of 5 ")
    assert (
        await assess(manager, rule(condition="crash-rate", below=80.0, cwd_prefix="/srv/app"))
    ).opening == []
    [everything] = (await assess(manager, rule(condition="crash-rate", below=90.0))).opening
    assert everything.facts["reason"].startswith("crash-free 40.0% over the last hour (6 of 10 ")
