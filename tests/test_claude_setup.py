"""`session-buddy claude-code install | uninstall | status` on real settings files: what
they write, what they leave alone, and how they refuse (the file stays as it was)."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from session_buddy.cli import main
from session_buddy.client import claude_settings

THEIRS = {"type": "command", "command": "/usr/local/bin/guard --strict"}


def run(home: Path, *args: str, **env: str) -> Result:
    environment = {"HOME": str(home), "CLAUDE_CONFIG_DIR": None, "XDG_CONFIG_HOME": None}
    environment |= {"SESSION_BUDDY_TOKEN": None, "SESSION_BUDDY_DATABASE_URL": None} | env
    return CliRunner().invoke(main, ["claude-code", *args], env=environment)


def settings_of(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / ".claude" / "settings.json").read_text()))


def commands(settings: dict[str, Any], event: str) -> list[str]:
    return [h.get("command") or h.get("url") for g in settings["hooks"][event] for h in g["hooks"]]


def write_settings(home: Path, settings: Any) -> Path:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(settings if isinstance(settings, str) else json.dumps(settings))
    return path


def test_install_merges_by_absolute_path_and_is_idempotent(tmp_path: Path) -> None:
    before = {
        "model": "opus",
        "hooks": {
            "Stop": [{"hooks": [THEIRS]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [THEIRS]}],
        },
    }
    path = write_settings(tmp_path, before)
    first = run(tmp_path, "install")
    assert first.exit_code == 0, first.output
    after = settings_of(tmp_path)
    assert (
        after["model"] == "opus" and after["hooks"]["PreToolUse"] == before["hooks"]["PreToolUse"]
    )
    assert set(after["hooks"]) == {"PreToolUse", *claude_settings.EVENTS}
    ours = commands(after, "SessionStart")[0]
    executable = shlex.split(ours)[0]
    assert os.path.isabs(executable) and os.access(executable, os.X_OK)
    assert commands(after, "Stop") == [THEIRS["command"], ours]  # theirs first, kept
    backups = list(path.parent.glob("settings.json.*.bak"))
    assert [json.loads(b.read_text()) for b in backups] == [before]
    again = run(tmp_path, "install")
    assert "nothing changed" in again.output
    assert settings_of(tmp_path) == after and len(list(path.parent.glob("*.bak"))) == 1


def test_install_again_with_other_flags_replaces_ours_in_place(tmp_path: Path) -> None:
    run(tmp_path, "install")
    changed = run(tmp_path, "install", "--server-url", "http://127.0.0.1:9/mcp")
    assert changed.exit_code == 0, changed.output
    hooks = commands(settings_of(tmp_path), "Stop")
    assert len(hooks) == 1 and hooks[0].endswith("--server-url http://127.0.0.1:9/mcp")
    assert "CANNOT REACH" in changed.output  # nothing listens on port 9


def test_a_token_goes_to_a_private_file_never_to_the_settings(tmp_path: Path) -> None:
    token = "sb-secret-token-value"
    done = run(tmp_path, "install", "--server-url", "http://127.0.0.1:9/mcp", "--token", token)
    assert done.exit_code == 0, done.output
    token_file = tmp_path / ".config" / "session-buddy" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == token
    text = (tmp_path / ".claude" / "settings.json").read_text()
    assert token not in text and f"--token-file {token_file}" in text


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret\n")
    token_file.chmod(0o644)
    done = run(
        tmp_path, "install", "--server-url", "http://h:1/mcp", "--token-file", str(token_file)
    )
    assert done.exit_code != 0 and "chmod 600" in done.output
    assert not (tmp_path / ".claude" / "settings.json").exists()


def test_a_password_in_the_database_url_is_refused(tmp_path: Path) -> None:
    url = "postgresql://sb:hunter2@db.example/sessions"
    done = run(tmp_path, "install", "--database-url", url)
    assert done.exit_code != 0 and "password" in done.output
    assert not (tmp_path / ".claude" / "settings.json").exists()


@pytest.mark.parametrize(
    "broken", ['{"hooks": {"Stop": [', '["not", "an", "object"]', '{"hooks": {"Stop": {}}}']
)
def test_settings_it_cannot_read_safely_are_left_as_they_are(tmp_path: Path, broken: str) -> None:
    path = write_settings(tmp_path, broken)
    for command in ("install", "uninstall"):
        done = run(tmp_path, command)
        assert done.exit_code != 0 and str(path) in done.output
    assert path.read_text() == broken and not list(path.parent.glob("*.bak"))
    assert "left as it is" in run(tmp_path, "status").output


def test_uninstall_removes_only_ours(tmp_path: Path) -> None:
    before = {"hooks": {"Stop": [{"hooks": [THEIRS]}]}, "permissions": {"allow": ["Bash(ls)"]}}
    write_settings(tmp_path, before)
    run(tmp_path, "install")
    stop = settings_of(tmp_path)["hooks"]["Stop"]
    stop[0]["hooks"].append(stop.pop()["hooks"][0])  # ours and theirs in one group
    write_settings(tmp_path, settings_of(tmp_path) | {"hooks": {"Stop": stop}})
    done = run(tmp_path, "uninstall")
    assert done.exit_code == 0 and "removed" in done.output
    assert settings_of(tmp_path) == before
    assert "nothing changed" in run(tmp_path, "uninstall").output


def test_project_scopes_and_http_activity(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    done = run(
        tmp_path,
        "install",
        "--scope",
        "local",
        "--project-dir",
        str(project),
        "--server-url",
        "http://127.0.0.1:9/mcp",
        "--http-activity",
    )
    assert done.exit_code == 0, done.output
    local = json.loads((project / ".claude" / "settings.local.json").read_text())
    assert commands(local, "Stop") == ["http://127.0.0.1:9/hooks/claude-code"]
    assert "hook claude-code --server-url" in commands(local, "SessionStart")[0]
    assert not (tmp_path / ".claude" / "settings.json").exists()
    status = run(tmp_path, "status", "--project-dir", str(project), "--json")
    scopes = {s["scope"]: s for s in json.loads(status.output)["settings"]}
    assert scopes["local"]["http"] and not scopes["user"]["events"]


def test_status_reports_the_store_and_the_last_event(tmp_path: Path) -> None:
    assert "not installed" in run(tmp_path, "status").output
    run(tmp_path, "install")
    hook = shlex.split(commands(settings_of(tmp_path), "SessionStart")[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env |= {"HOME": str(tmp_path)}
    payload = {"session_id": "c1", "cwd": "/srv", "hook_event_name": "SessionStart"}
    subprocess.run(hook, input=json.dumps(payload), text=True, env=env, check=True)
    report = json.loads(run(tmp_path, "status", "--json").output)["destination"]
    assert report["reachable"] and report["destination"].endswith("session-buddy/sessions.db")
    assert report["last_event"]["status"] == "active"


@pytest.mark.parametrize(
    ("command", "ours"),
    [
        (f"{sys.executable} -m session_buddy hook claude-code", True),
        ("'/opt/my tools/session-buddy' hook claude-code --server-url http://h/mcp", True),
        ("session-buddy hook claude-code", True),
        ("echo hook claude-code", False),
        ("session-buddy emit start", False),
        ("unbalanced 'quote", False),
    ],
)
def test_which_hooks_are_ours(command: str, ours: bool) -> None:
    assert claude_settings.is_ours({"type": "command", "command": command}) is ours


def test_telemetry_goes_in_the_settings_env_with_the_token_from_a_helper(tmp_path: Path) -> None:
    write_settings(tmp_path, {"env": {"DISABLE_AUTOUPDATER": "1"}})
    server = "http://127.0.0.1:8678/mcp"
    token = "header.payload.signature"
    done = run(tmp_path, "install", "--server-url", server, "--telemetry", "--token", token)
    assert done.exit_code == 0, done.output
    settings = settings_of(tmp_path)
    assert settings["env"]["DISABLE_AUTOUPDATER"] == "1"  # theirs, kept
    assert settings["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:8678"
    assert settings["env"]["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert token not in json.dumps(settings)
    helper = shlex.split(settings["otelHeadersHelper"])
    printed = subprocess.run(helper, capture_output=True, text=True, check=True).stdout
    assert json.loads(printed) == {"Authorization": f"Bearer {token}"}
    assert "Claude Code's telemetry goes to http://127.0.0.1:8678" in run(tmp_path, "status").output
    assert "--telemetry needs --server-url" in run(tmp_path, "install", "--telemetry").output
    again = run(tmp_path, "install", "--server-url", server, "--telemetry", "--token", token)
    assert "nothing changed" in again.output
    run(tmp_path, "uninstall")
    assert settings_of(tmp_path) == {"env": {"DISABLE_AUTOUPDATER": "1"}}


def test_telemetry_of_their_own_is_left_as_it_is(tmp_path: Path) -> None:
    theirs = {"env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}}
    path = write_settings(tmp_path, theirs)
    done = run(tmp_path, "install", "--server-url", "http://127.0.0.1:8678", "--telemetry")
    assert done.exit_code != 0
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 already" in done.output
    assert json.loads(path.read_text()) == theirs
