"""The command line, as a shell script or a person uses it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mcp_helpers import free_port, http_server, run_cli


def cli(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    spool = str(tmp_path / "spool.db")
    return run_cli(
        f"sqlite:///{tmp_path / 'cli.db'}", *args, check=check, SESSION_BUDDY_SPOOL=spool
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_a_shell_script_session_from_start_to_stats(tmp_path: Path) -> None:
    session_id = cli(tmp_path, "emit", "start", "--component", "backup").stdout.strip()
    assert session_id.startswith("backup-")
    cli(tmp_path, "emit", "heartbeat", "--session-id", session_id)
    active = as_json(cli(tmp_path, "sessions", "list", "--active", "--json"))
    assert [s["session_id"] for s in active["sessions"]] == [session_id]
    assert active["sessions"][0]["shell_type"] == "Script"
    table = cli(tmp_path, "sessions", "list").stdout
    assert session_id in table and "active" in table
    ended = cli(tmp_path, "emit", "end", "--session-id", session_id, "--exit-code", "2")
    assert ended.stdout.strip() == "crashed"  # exit code 2: the final state the server returned
    shown = as_json(cli(tmp_path, "sessions", "show", session_id, "--json"))
    assert (shown["status"], shown["exit_code"]) == ("crashed", 2)
    stats = as_json(cli(tmp_path, "stats", "--by", "component_name", "--json"))
    assert [(g["key"], g["crashed"], g["crash_rate"]) for g in stats["groups"]] == [
        ("backup", 1, 1.0)
    ]
    assert "backup" in cli(tmp_path, "stats").stdout
    assert as_json(cli(tmp_path, "reap", "--json")) == {"abandoned": []}
    assert "schema up to date" in cli(tmp_path, "db", "upgrade").stdout


def test_errors_are_explained_with_a_non_zero_exit(tmp_path: Path) -> None:
    no_store = cli(tmp_path, "sessions", "list", check=False)
    assert no_store.returncode == 2
    assert no_store.stderr == f"session-buddy: no session database at {tmp_path / 'cli.db'}\n"
    assert not (tmp_path / "cli.db").exists()  # a read creates nothing
    cli(tmp_path, "db", "upgrade")
    missing = cli(tmp_path, "sessions", "show", "nope-20260101-000000", check=False)
    assert missing.returncode == 1 and "no session" in missing.stderr
    bad_component = cli(tmp_path, "emit", "start", "--component", "no spaces", check=False)
    assert bad_component.returncode != 0 and "Invalid component_name" in bad_component.stderr
    bad_metadata = cli(
        tmp_path, "emit", "start", "--component", "x", "--metadata", "{oops", check=False
    )
    assert bad_metadata.returncode != 0 and "--metadata is not JSON" in bad_metadata.stderr
    bad_since = cli(tmp_path, "stats", "--since", "last tuesday", check=False)
    assert bad_since.returncode != 0 and "Invalid value for '--since'" in bad_since.stderr
    malformed = run_cli(
        f"sqlite:///{tmp_path / 'cli.db'}",
        "sessions",
        "list",
        check=False,
        SESSION_BUDDY_RETENTION="soon",
    )
    assert malformed.returncode == 2
    assert (
        malformed.stderr
        == "session-buddy: SESSION_BUDDY_RETENTION='soon': use a duration such as 90d, or off\n"
    )
    bad_url = cli(tmp_path, "sessions", "list", "--database-url", "mysql://x", check=False)
    assert bad_url.returncode != 0 and "Unsupported database URL scheme" in bad_url.stderr


def test_emit_spools_while_the_server_is_down(tmp_path: Path) -> None:
    port = free_port()
    down = f"http://127.0.0.1:{port}/mcp"
    printed = cli(tmp_path, "emit", "start", "--component", "cron", "--server-url", down)
    placeholder = printed.stdout.strip()
    assert placeholder.startswith("spooled:")
    ended = cli(tmp_path, "emit", "end", "--session-id", placeholder, "--server-url", down)
    assert ended.stdout.strip() == "spooled"
    with http_server(f"sqlite:///{tmp_path / 'cli.db'}", port=port):  # back where it was
        flushed = cli(tmp_path, "spool", "flush")
    assert f"{down}: delivered 2, rejected 0, quarantined 0, 0 still waiting" in flushed.stdout
    [session] = as_json(cli(tmp_path, "sessions", "list", "--json"))["sessions"]
    assert (session["component_name"], session["status"]) == ("cron", "ended")
    assert 0 <= session["duration_seconds"] < 30
