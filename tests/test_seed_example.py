"""The seed document's usage example is a contract: it must run verbatim."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from session_buddy.core import SessionLifecycleManager

# Copied verbatim from shared/reference/000_0055446e8d698306.txt, "Basic Usage".
SEED_EXAMPLE = """
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp import SessionTracker, SessionStartEvent, SessionEndEvent
from session_buddy.mcp.event_models import UserInfo, EnvironmentInfo
# Initialize tracker
lifecycle_mgr = SessionLifecycleManager()
tracker = SessionTracker(lifecycle_mgr)
# Handle session start
start_event = SessionStartEvent(
event_version="1.0",
event_id="550e8400-e29b-41d4-a716-446655440000",
component_name="mahavishnu",
shell_type="MahavishnuShell",
timestamp="2026-02-06T12:34:56.789Z",
pid=12345,
user=UserInfo(username="john", home="/home/john"),
hostname="server01",
environment=EnvironmentInfo(
python_version="3.13.0",
platform="Linux-6.5.0-x86_64",
cwd="/home/john/projects/mahavishnu"
)
)
start_result = await tracker.handle_session_start(start_event)
print(f"Session started: {start_result.session_id}")
# Handle session end
end_event = SessionEndEvent(
session_id="mahavishnu-20260206-123456",
timestamp="2026-02-06T13:45:07.890Z",
metadata={"exit_reason": "user_exit"}
)
end_result = await tracker.handle_session_end(end_event)
print(f"Session ended: {end_result.status}")
"""


async def run_seed_example() -> dict[str, object]:
    """Execute the example as written (top-level await included); return its globals."""
    code = compile(SEED_EXAMPLE, "<seed example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {}
    result = eval(code, namespace)
    if result is not None:
        await result
    return namespace


async def test_seed_example_runs_verbatim_on_the_default_store(
    capsys: pytest.CaptureFixture[str], isolated_default_store: Path
) -> None:
    namespace = await run_seed_example()
    lifecycle_mgr = namespace["lifecycle_mgr"]
    assert isinstance(lifecycle_mgr, SessionLifecycleManager)
    try:
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "Session started: mahavishnu-20260206-123456",
            "Session ended: ended",
        ]
        assert isolated_default_store.exists()
        stored = await lifecycle_mgr.get_session("mahavishnu-20260206-123456")
        assert stored is not None
        assert stored["status"] == "ended"
        assert stored["duration_seconds"] == pytest.approx(4211.101, abs=1e-9)
        assert stored["started_at"] == "2026-02-06T12:34:56.789000Z"
        assert stored["ended_at"] == "2026-02-06T13:45:07.890000Z"
        assert stored["end_reason"] == "user_exit"
        assert stored["cwd"] == "/home/john/projects/mahavishnu"
    finally:
        await lifecycle_mgr.close()


async def test_seed_end_result_carries_final_state_and_duration(
    isolated_default_store: Path,
) -> None:
    namespace = await run_seed_example()
    end_result = namespace["end_result"]
    lifecycle_mgr = namespace["lifecycle_mgr"]
    assert isinstance(lifecycle_mgr, SessionLifecycleManager)
    await lifecycle_mgr.close()
    assert end_result.session_id == "mahavishnu-20260206-123456"  # type: ignore[attr-defined]
    assert end_result.session_status == "ended"  # type: ignore[attr-defined]
    assert end_result.duration_seconds == pytest.approx(4211.101)  # type: ignore[attr-defined]


async def test_running_the_example_twice_changes_nothing(isolated_default_store: Path) -> None:
    """Clients retry: the same start event id and a second end leave one ended session."""
    for _ in range(2):
        namespace = await run_seed_example()
        lifecycle_mgr = namespace["lifecycle_mgr"]
        assert isinstance(lifecycle_mgr, SessionLifecycleManager)
        assert namespace["start_result"].session_id == "mahavishnu-20260206-123456"  # type: ignore[attr-defined]
        assert namespace["end_result"].status == "ended"  # type: ignore[attr-defined]
        page = await lifecycle_mgr.list_sessions()
        await lifecycle_mgr.close()
        assert [s["session_id"] for s in page["sessions"]] == ["mahavishnu-20260206-123456"]
