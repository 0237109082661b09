"""The exact input rules of DESIGN §2–§3, through the MCP client, on SQLite and
PostgreSQL alike: each bad input is refused naming its field, and nothing stored changes."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from mcp import Client

from conftest import start_payload
from mcp_helpers import structured
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp.server import build_mcp_server
from session_buddy.timestamps import now_iso

END = {"timestamp": "2026-02-06T12:40:00Z"}


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return structured(await client.call_tool(tool, arguments))


def refused(result: dict[str, Any], field: str) -> None:
    assert result["status"] == "error", result
    assert result["error_code"] == "invalid_argument", result
    assert field in result["error"], result


def in_memory(manager: SessionLifecycleManager) -> Client:
    return Client(build_mcp_server(SessionService(manager)))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"component_name": "abc\n"}, "component_name"),
        ({"timestamp": "２０２６-02-06T12:34:56Z"}, "timestamp"),
        ({"timestamp": "9999-12-31T00:00:00Z"}, "timestamp"),
        ({"pid": True}, "pid"),
        ({"pid": "１２３"}, "pid"),
        ({"hostname": "web\x00one"}, "hostname"),
        ({"shell_type": "Shell\x1b[31m"}, "shell_type"),
        ({"environment": {"python_version": "3", "platform": "x", "cwd": "/a\x00b"}}, "cwd"),
        ({"user": {"username": "ro\x07ot", "home": "/root"}}, "username"),
    ],
)
async def test_bad_starts_are_refused_naming_the_field(
    manager: SessionLifecycleManager, changes: dict[str, Any], field: str
) -> None:
    async with in_memory(manager) as client:
        refused(await call(client, "track_session_start", start_payload(**changes)), field)
        assert (await call(client, "list_sessions", {}))["sessions"] == []


async def test_one_event_id_however_it_is_spelled(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        event_id = uuid.uuid4()
        spellings = [str(event_id), f"{{{event_id}}}", f"urn:uuid:{event_id}", event_id.hex]
        ids = {
            (await call(client, "track_session_start", start_payload(event_id=spelling)))[
                "session_id"
            ]
            for spelling in [*spellings, str(event_id).upper()]
        }
        assert len(ids) == 1
        [session] = (await call(client, "list_sessions", {}))["sessions"]
        assert session["event_id"] == str(event_id)


async def test_a_repeated_event_id_with_other_content_is_flagged(
    manager: SessionLifecycleManager,
) -> None:
    async with in_memory(manager) as client:
        event_id = str(uuid.uuid4())
        first = await call(client, "track_session_start", start_payload(event_id=event_id))
        again = await call(client, "track_session_start", start_payload(event_id=event_id))
        assert again == first  # a plain retry: no warning
        changed = start_payload(event_id=event_id, pid=4242)
        other = await call(client, "track_session_start", changed)
        assert other["session_id"] == first["session_id"] and other["status"] == "tracked"
        assert "pid" in other["warning"] and "other content" in other["warning"]
        record = await call(client, "get_session", {"session_id": first["session_id"]})
        assert record["pid"] == start_payload()["pid"]  # the first session is unchanged


@pytest.mark.parametrize(
    "exit_code", [2**63, -(2**63) - 1, "137", "²", True, 1.5, {"code": 1}], ids=repr
)
async def test_bad_exit_codes_leave_the_session_active(
    manager: SessionLifecycleManager, exit_code: Any
) -> None:
    async with in_memory(manager) as client:
        started = await call(client, "track_session_start", start_payload())
        end = END | {"session_id": started["session_id"], "metadata": {"exit_code": exit_code}}
        refused(await call(client, "track_session_end", end), "metadata.exit_code")
        record = await call(client, "get_session", {"session_id": started["session_id"]})
        assert record["status"] == "active"


async def test_exit_codes_of_64_bits_are_stored_as_integers(
    manager: SessionLifecycleManager,
) -> None:
    async with in_memory(manager) as client:
        for code in (3221225477, 2**63 - 1, -(2**63)):
            started = await call(client, "track_session_start", start_payload())
            end = END | {"session_id": started["session_id"], "metadata": {"exit_code": code}}
            ended = await call(client, "track_session_end", end)
            assert ended["session_status"] == "crashed"
            record = await call(client, "get_session", {"session_id": started["session_id"]})
            assert record["exit_code"] == code


async def test_nul_in_metadata_is_kept_exactly_and_end_reasons_stay_readable(
    manager: SessionLifecycleManager,
) -> None:
    async with in_memory(manager) as client:
        metadata = {"note": "a\x00b", "nested": {"bell": "\x07"}}
        started = await call(client, "track_session_start", start_payload(metadata=metadata))
        end = END | {"session_id": started["session_id"], "metadata": {"exit_reason": "oops\x00"}}
        assert (await call(client, "track_session_end", end))["status"] == "ended"
        record = await call(client, "get_session", {"session_id": started["session_id"]})
        assert record["start_metadata"] == metadata
        assert record["end_metadata"] == {"exit_reason": "oops\x00"}
        assert record["end_reason"] == "oops\\x00"


async def test_future_ends_and_heartbeats_are_refused(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        started = await call(client, "track_session_start", start_payload(timestamp=now_iso()))
        session_id = started["session_id"]
        future = "2099-01-01T00:00:00Z"
        refused(
            await call(
                client, "track_session_end", {"session_id": session_id, "timestamp": future}
            ),
            "timestamp",
        )
        beat = {"session_id": session_id, "timestamp": future}
        refused(await call(client, "track_session_heartbeat", beat), "timestamp")
        record = await call(client, "get_session", {"session_id": session_id})
        assert record["status"] == "active" and record["last_seen_at"] == record["started_at"]


async def test_unknown_arguments_are_named(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        refused(await call(client, "track_session_start", start_payload(colour="red")), "colour")
        refused(await call(client, "list_sessions", {"stauts": "active"}), "stauts")
        assert (await call(client, "list_sessions", {}))["sessions"] == []


async def test_bad_windows_and_cursors_are_named(manager: SessionLifecycleManager) -> None:
    async with in_memory(manager) as client:
        window = {"since": "2026-02-07T00:00:00Z", "until": "2026-02-06T00:00:00Z"}
        refused(await call(client, "session_stats", window), "since")
        forged = json.dumps([10**30, "x"]).encode()
        cursor = base64.urlsafe_b64encode(forged).decode()
        refused(await call(client, "list_sessions", {"cursor": cursor}), "cursor")


async def test_the_event_log_keeps_the_payload_as_received(
    manager: SessionLifecycleManager,
) -> None:
    async with in_memory(manager) as client:
        sent = start_payload() | {"metadata": {"zeta": 1, "alpha": " padded "}}
        sent["user"] = {"username": "  john ", "home": "/home/john"}
        await call(client, "track_session_start", sent)
        rows = await manager.store.read(lambda tx: tx.all("SELECT payload FROM events"))
        assert json.loads(rows[0]["payload"]) == sent
