"""The command line as a person uses it: 80-column tables, time flags, a remote server,
event logs, exports, time buckets, retention and backups — on real stores."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import POSTGRES_ENV, start_payload
from mcp_helpers import http_server, run_cli, server_env
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager, usage
from session_buddy.timestamps import format_micros, now_iso, now_micros

LONG = "a-component-with-a-rather-long-name"  # ids of 52 characters


def cli(url: str, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    """The command at 80 columns, as in a narrow terminal (unless `env` says otherwise)."""
    return run_cli(url, *args, check=check, **({"COLUMNS": "80"} | env))


async def stored(url: str) -> dict[str, str]:
    """Four sessions: ended long ago (65 s), ended (1h 10m), crashed, active; their ids."""
    sessions = [
        ("old", "2025-01-10T10:00:00Z", "2025-01-10T10:01:05Z", 0),
        ("ended", "2026-11-20T10:00:00Z", "2026-11-20T11:10:00Z", 0),
        ("crashed", "2026-11-21T10:00:00Z", "2026-11-21T10:00:05Z", 139),
        ("active", now_iso(), None, None),
    ]
    ids = {}
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        for pid, (name, started, ended, code) in enumerate(sessions, start=101):
            event = start_payload(component_name=LONG, timestamp=started, pid=pid)
            ids[name] = str((await service.start(event)).session_id)
            if ended is not None:
                end = {"exit_code": code}
                await service.end({"session_id": ids[name], "timestamp": ended, "metadata": end})
    return ids


async def test_tables_fit_80_columns_with_whole_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    ids = await stored(url)
    shown = cli(url, "sessions", "list").stdout
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    for session_id in ids.values():
        assert session_id in shown  # whole, on one line
    assert "1h 10m" in shown and "1m 05s" in shown  # human durations
    assert "\x1b[" not in shown  # no colour when piped
    days = (datetime.now(UTC) - datetime(2026, 11, 20, 10, tzinfo=UTC)).days
    assert f"{days} days ago" in shown  # the ended one's age (local times need more room)
    wide = cli(url, "sessions", "list", COLUMNS="140").stdout
    assert re.search(r"2026-11-20 \d\d:\d\d \(\d+ days? ago\)", wide)  # local time, age
    for columns in ("80", "60"):
        for by in ((), ("--by", "day")):
            stats = cli(url, "stats", *by, COLUMNS=columns).stdout
            lines = stats.splitlines()
            assert all(len(line) <= int(columns) for line in lines), stats
            assert "…" not in stats  # no header, group or value cut
            assert ("day" if by else LONG) in stats  # the group, whole
            assert {"total", "p50", "crash%"} <= set(lines[0].split())


async def test_time_flags_as_people_type_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    ids = await stored(url)
    for flag in ("24h", "7d", "today", "yesterday", "2026-11-26", "2026-11-19T00:00:00Z"):
        listed = json.loads(cli(url, "sessions", "list", "--since", flag, "--json").stdout)
        assert ids["active"] in [s["session_id"] for s in listed["sessions"]], flag
    recent = json.loads(cli(url, "sessions", "list", "--since", "2026-11-19", "--json").stdout)
    assert ids["old"] not in [s["session_id"] for s in recent["sessions"]]
    wrong = cli(url, "stats", "--until", "last tuesday", check=False)
    assert wrong.returncode == 2 and "Invalid value for '--until'" in wrong.stderr


async def test_a_remote_server_answers_every_data_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    ids = await stored(url)
    secret = {"SESSION_BUDDY_SECRET": "people-secret-0123456789abcdefghijklmnop"}
    minted = cli(url, "token", "create", "--scope", "sessions:read", **secret).stdout.split()[-1]
    elsewhere = f"sqlite:///{tmp_path / 'nothing-here.db'}"  # the CLI's own store is empty
    with http_server(url, **secret) as (base, _):
        remote = ("--server-url", f"{base}/mcp", "--token", minted)
        listed = cli(elsewhere, "sessions", "list", *remote).stdout
        assert all(session_id in listed for session_id in ids.values())
        shown = cli(elsewhere, "sessions", "show", ids["crashed"], *remote).stdout
        assert "crashed" in shown and "exit_code 139" in shown
        log = json.loads(
            cli(elsewhere, "sessions", "events", ids["ended"], *remote, "--json").stdout
        )
        assert [event["event_type"] for event in log] == ["session_start", "session_end"]
        assert log[0]["payload"]["component_name"] == LONG  # the payload as received
        stats = json.loads(cli(elsewhere, "stats", *remote, "--json").stdout)
        assert stats["groups"][0]["total"] == 4
        exported = cli(elsewhere, "sessions", "export", *remote).stdout.splitlines()
        assert len(exported) == 4
        refused = cli(elsewhere, "sessions", "list", "--server-url", f"{base}/mcp", check=False)
        assert refused.returncode == 1 and "unauthorized" in refused.stderr
    assert not (tmp_path / "nothing-here.db").exists()


async def test_external_id_and_help_everywhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    async with SessionLifecycleManager(url) as manager:
        event = start_payload(metadata={"external_id": "claude-abc"}, timestamp=now_iso())
        started = await SessionService(manager).start(event)
    found = json.loads(cli(url, "sessions", "list", "--external-id", "claude-abc", "--json").stdout)
    assert [s["session_id"] for s in found["sessions"]] == [started.session_id]
    groups = ["", "sessions", "spool", "db", "emit", "hook", "token"]
    commands = ["serve", "stats", "reap", "prune", "sessions list", "sessions export"]
    for command in [*groups, *commands]:
        helped = cli(url, *command.split(), "-h")
        assert "Usage: session-buddy" in helped.stdout, command


async def test_stats_by_time_bucket_with_filters(database_url: str) -> None:
    async with SessionLifecycleManager(database_url) as manager:
        service = SessionService(manager)
        for pid, (component, when) in enumerate(
            [
                ("web", "2026-11-23T08:00:00Z"),  # Monday
                ("web", "2026-11-23T09:30:00Z"),
                ("web", "2026-11-24T09:00:00Z"),
                ("db", "2026-11-22T23:00:00Z"),  # Sunday: the week before
            ],
            start=200,
        ):
            await service.start(start_payload(component_name=component, timestamp=when, pid=pid))
        daily = await manager.session_stats(None, bucket="day")
        assert [(g["bucket"][:10], g["total"]) for g in daily["groups"]] == [
            ("2026-11-22", 1),
            ("2026-11-23", 2),
            ("2026-11-24", 1),
        ]
        weekly = await manager.session_stats("component_name", bucket="week")
        assert [(g["key"], g["bucket"][:10], g["total"]) for g in weekly["groups"]] == [
            ("db", "2026-11-16", 1),
            ("web", "2026-11-23", 3),
        ]
        hourly = await manager.session_stats(None, bucket="hour", component_name="web")
        assert [(g["bucket"][:13], g["total"]) for g in hourly["groups"]] == [
            ("2026-11-23T08", 1),
            ("2026-11-23T09", 1),
            ("2026-11-24T09", 1),
        ]
        plain = await manager.session_stats("component_name")
        assert "bucket" not in plain and all("bucket" not in g for g in plain["groups"])


async def test_prune_keeps_what_it_should(database_url: str) -> None:
    ids = await stored(database_url)
    async with SessionLifecycleManager(database_url) as manager:
        window = {"since": "2026-01-01T00:00:00Z"}
        before = await manager.session_stats("component_name", **window)
        dry = await manager.prune("2026-11-21T00:00:00Z", dry_run=True)
        assert (dry.sessions, dry.events, dry.by_status) == (2, 4, {"ended": 2})
        assert await manager.get_session(ids["old"]) is not None  # a dry run deletes nothing
        pruned = await manager.prune("2026-01-01T00:00:00Z")
        assert (pruned.sessions, pruned.events) == (1, 2)
        assert await manager.get_session(ids["old"]) is None
        assert await manager.session_events(ids["old"]) == []
        after = await manager.session_stats("component_name", **window)
        assert after == before  # stats of the window after the cutoff are unchanged
        everything = await manager.prune(now_iso())
        assert everything.sessions == 2  # the active session stays
        assert (await manager.get_session(ids["active"]) or {}).get("status") == "active"


async def test_prune_and_backup_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    ids = await stored(url)
    dry = cli(url, "prune", "--older-than", "90d", "--dry-run").stdout
    assert dry.startswith("would delete 1 session(s)") and "1 ended" in dry
    done = cli(url, "prune", "--before", "2026-01-01").stdout
    assert done.startswith("deleted 1 session(s)") and "2 event(s)" in done
    backup = tmp_path / "backup.db"
    cli(url, "db", "backup", str(backup))
    copied = json.loads(cli(f"sqlite:///{backup}", "sessions", "list", "--json").stdout)
    assert {s["session_id"] for s in copied["sessions"]} == {
        ids["ended"],
        ids["crashed"],
        ids["active"],
    }
    assert cli(url, "prune", check=False).returncode == 2  # --older-than or --before


async def test_export_streams_csv_and_ndjson(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        for number in range(1203):  # more than two pages
            stamp = f"2026-11-20T{number // 3600:02d}:{number // 60 % 60:02d}:{number % 60:02d}Z"
            await service.start(start_payload(timestamp=stamp, pid=1000 + number))
    lines = cli(url, "sessions", "export").stdout.splitlines()
    assert len(lines) == 1203 and len({json.loads(line)["session_id"] for line in lines}) == 1203
    table = list(
        csv.DictReader(io.StringIO(cli(url, "sessions", "export", "--format", "csv").stdout))
    )
    assert len(table) == 1203 and table[0]["component_name"] == "mahavishnu"
    # One column order for both; CSV spreads the usage object over columns of its own.
    record = list(json.loads(lines[0]))
    assert record[-1] == "usage" and list(table[0]) == [*record[:-1], *usage.COUNTERS]
    assert table[0]["cost_usd"] == "" and json.loads(lines[0])["usage"] is None
    active = cli(url, "sessions", "export", "--status", "ended").stdout
    assert active == ""


def test_serve_on_a_terminal_says_what_it_is(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "session_buddy", "serve"],
        env=server_env(f"sqlite:///{tmp_path / 'tty.db'}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 20
    while b"serve --http" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(leader, 4096)
        except OSError:
            break
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=20)
    os.close(leader)
    text = seen.decode()
    assert "MCP server on stdin/stdout" in text and "tty.db" in text


async def test_the_server_prunes_by_itself_with_a_retention(tmp_path: Path) -> None:
    retention_server = f"sqlite:///{tmp_path / 'retained.db'}"
    ids = await stored(retention_server)
    settings = {"SESSION_BUDDY_RETENTION": "30d", "SESSION_BUDDY_REAP_INTERVAL": "0.2"}
    with http_server(retention_server, **settings):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            async with SessionLifecycleManager(retention_server, read_only=True) as manager:
                if await manager.get_session(ids["old"]) is None:
                    break
            time.sleep(0.2)
    async with SessionLifecycleManager(retention_server, read_only=True) as manager:
        assert await manager.get_session(ids["old"]) is None
        assert await manager.get_session(ids["ended"]) is not None


async def test_backups_make_their_folder_and_never_overwrite(tmp_path: Path) -> None:
    home = tmp_path / "home"  # a new user's, empty
    home.mkdir()
    store = home / ".local/share/session-buddy/sessions.db"
    store.parent.mkdir(parents=True)
    url = f"sqlite:///{store}"
    await stored(url)
    daily = f"{home}/backups/sessions-{datetime.now(UTC):%F}.db"  # README's own line
    first = cli(url, "db", "backup", daily, HOME=str(home))
    assert first.stdout == f"backed up {store} to {daily}\n"
    again = cli(url, "db", "backup", daily, HOME=str(home), check=False)
    assert again.returncode == 1 and again.stderr == (
        f"Error: {daily} exists: give a new file, or a folder for sessions-<time>.db\n"
    )
    cli(url, "db", "backup", f"{home}/backups/", HOME=str(home))  # a folder: a new name
    cli(url, "db", "backup", HOME=str(home))  # no path: backups/ beside the store
    assert len(list((home / "backups").glob("sessions-*.db"))) == 2
    [beside] = list((store.parent / "backups").glob("sessions-*-*.db"))
    copied = json.loads(cli(f"sqlite:///{beside}", "sessions", "list", "--json").stdout)
    assert len(copied["sessions"]) == 4
    unwritable = cli(url, "db", "backup", "/proc/sessions.db", HOME=str(home), check=False)
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr
    assert unwritable.stderr.startswith("Error: cannot back up to /proc/sessions.db: ")
    assert len(unwritable.stderr.strip().splitlines()) == 1


def test_emit_says_loudly_when_its_store_cannot_be_written(tmp_path: Path) -> None:
    home = tmp_path / "home"  # a new user's, empty
    home.mkdir()
    server = os.environ.get(POSTGRES_ENV) or pytest.skip(f"needs {POSTGRES_ENV}")
    missing = server.split("?")[0].rsplit("/", 1)[0] + f"/no_such_db_{os.getpid()}"
    started = cli(missing, "emit", "start", "--component", "backup", HOME=str(home))
    assert started.stdout.startswith("spooled:")  # kept: nothing is lost
    [said] = started.stderr.strip().splitlines()
    assert said.startswith(f"session-buddy: {missing} cannot be written now (")
    assert said.endswith(
        f"Create the database (createdb no_such_db_{os.getpid()}), then: "
        f"session-buddy db upgrade --database-url {missing}"
    )


async def test_sessions_in_two_projects_are_told_apart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        for number, project in enumerate(("alpha", "beta")):
            event = start_payload(
                component_name="claude-code", pid=100 + number, timestamp=now_iso()
            )
            event["environment"]["cwd"] = f"/home/john/{project}"
            await service.start(event)
    narrow = cli(url, "sessions", "list").stdout
    assert "project" in narrow.splitlines()[0]
    assert " alpha " in narrow and " beta " in narrow
    wide = cli(url, "sessions", "list", COLUMNS="160").stdout
    assert "/home/john/alpha" in wide and "/home/john/beta" in wide
    by_cwd = json.loads(cli(url, "stats", "--by", "cwd", "--json").stdout)
    assert [group["key"] for group in by_cwd["groups"]] == ["/home/john/alpha", "/home/john/beta"]


async def test_an_abandoned_sessions_duration_says_it_is_a_lower_bound(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    clock = [now_micros()]
    async with SessionLifecycleManager(url, abandon_after=60, clock=lambda: clock[0]) as manager:
        event = start_payload(pid=None, timestamp=format_micros(clock[0] - 12 * 60_000_000))
        session_id = str((await SessionService(manager).start(event)).session_id)
        await manager.heartbeat(session_id, format_micros(clock[0] - 11 * 60_000_000))
        clock[0] += 120_000_000  # silent for longer than abandon_after
        assert await manager.reap() == [session_id]
    [row] = [
        line for line in cli(url, "sessions", "list").stdout.splitlines() if session_id in line
    ]
    assert "abandoned" in row and row.endswith("≥ 1m 00s")
    shown = cli(url, "sessions", "show", session_id, COLUMNS="120").stdout
    [duration] = [line for line in shown.splitlines() if "duration_seconds" in line]
    assert "≥ 1m 00s, last seen " in duration and "min ago)" in duration
