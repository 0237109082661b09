"""session-buddy's hooks in Claude Code's settings files: where the files are, which
hooks are ours, and writing them in or out without touching anyone else's.

A settings file is changed only by `install` and `uninstall`, atomically (a new file
renamed over the old one, with the old one's mode), and only when something changes;
the file as it was is kept beside it first. Hooks are ours when they run
`session-buddy hook claude-code` (by any path, or `python -m session_buddy`) or post to
a `/hooks/claude-code` URL; every other hook, matcher and setting is kept as it was.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from session_buddy.config import TOKEN_ENV

SCOPES = ("user", "project", "local")
# Start and end need the command hook (the process, the spool); the rest is activity.
LIFECYCLE = ("SessionStart", "SessionEnd")
ACTIVITY = (
    *("UserPromptSubmit", "PermissionRequest", "PostToolUse", "PostToolUseFailure", "Stop"),
    *("StopFailure", "Notification", "SubagentStart", "SubagentStop", "PreCompact"),
    "PostCompact",
)
EVENTS = (*LIFECYCLE, *ACTIVITY)
HOOK_PATH = "/hooks/claude-code"


class SettingsError(ValueError):
    """A settings file that cannot be read or changed safely; it is left as it was."""


def settings_path(scope: str, project_dir: Path) -> Path:
    """The settings file of a scope: the user's (`$CLAUDE_CONFIG_DIR` or ~/.claude), the
    project's shared one, or the project's local, uncommitted one."""
    if scope == "user":
        config_dir = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.expanduser("~/.claude")
        return Path(config_dir) / "settings.json"
    name = "settings.json" if scope == "project" else "settings.local.json"
    return project_dir.resolve() / ".claude" / name


def hook_executable() -> list[str]:
    """This installation's command, by absolute path: Claude Code may run hooks without
    the virtualenv on PATH (an IDE, a login shell without the profile line)."""
    script = Path(sys.executable).with_name("session-buddy")
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "session_buddy"]


def hook_command(flags: dict[str, str]) -> str:
    """The command hook's shell line, as Claude Code runs it with `sh -c`."""
    words = [*hook_executable(), "hook", "claude-code"]
    for name, value in flags.items():
        words += [name, value]
    return shlex.join(words)


def command_hook(flags: dict[str, str]) -> dict[str, Any]:
    return {"type": "command", "command": hook_command(flags)}


def http_hook(server_base: str, with_token: bool) -> dict[str, Any]:
    """Claude Code posts the payload itself: no process per event, but nothing is
    spooled while the server is down. The token, when one is needed, comes from Claude
    Code's environment at run time, never from the file."""
    hook: dict[str, Any] = {"type": "http", "url": server_base + HOOK_PATH}
    if with_token:
        hook["headers"] = {"Authorization": f"Bearer ${TOKEN_ENV}"}
        hook["allowedEnvVars"] = [TOKEN_ENV]
    return hook


def is_ours(hook: Any) -> bool:
    if not isinstance(hook, dict):
        return False
    if hook.get("type") == "http":
        return str(hook.get("url", "")).rstrip("/").endswith(HOOK_PATH)
    try:
        words = shlex.split(str(hook.get("command", "")))
    except ValueError:
        return False
    for at in range(len(words) - 1):
        if words[at : at + 2] == ["hook", "claude-code"]:
            runner = words[:at]
            module = runner[-2:] == ["-m", "session_buddy"]
            return module or (bool(runner) and os.path.basename(runner[-1]) == "session-buddy")
    return False


def load(path: Path) -> dict[str, Any]:
    """The settings in a file ({} when there is none yet); SettingsError when it is not a
    JSON object with a `hooks` object of lists."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        settings = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc}); it was left as it is") from exc
    if not isinstance(settings, dict):
        raise SettingsError(f"{path} does not hold a JSON object; it was left as it is")
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        raise SettingsError(f"{path}: `hooks` is not an object of lists; it was left as it is")
    return settings


def with_ours(settings: dict[str, Any], ours: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`settings` with our hook for each event in `ours` (in place of an older one of
    ours, else appended), ours removed from every other event, the rest untouched."""
    hooks: dict[str, list[Any]] = {}
    for event, groups in settings.get("hooks", {}).items():
        kept = _replaced(groups, ours.get(event))
        if kept or not groups:
            hooks[event] = kept
    for event, hook in ours.items():
        if not any(is_ours(h) for g in hooks.get(event, []) for h in _hooks_of(g)):
            hooks.setdefault(event, []).append({"hooks": [hook]})
    return _with_hooks(settings, hooks)


def without_ours(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with every hook of ours removed (and the groups and events that held
    only ours), everything else untouched."""
    return with_ours(settings, {})


def _hooks_of(group: Any) -> list[Any]:
    hooks = group.get("hooks") if isinstance(group, dict) else None
    return hooks if isinstance(hooks, list) else []


def _replaced(groups: list[Any], new: dict[str, Any] | None) -> list[Any]:
    """The matcher groups with the first hook of ours replaced by `new` and any other of
    ours dropped; a group left empty by that is dropped."""
    kept: list[Any] = []
    for group in groups:
        hooks = _hooks_of(group)
        if not any(is_ours(hook) for hook in hooks):
            kept.append(group)
            continue
        others: list[Any] = []
        for hook in hooks:
            if not is_ours(hook):
                others.append(hook)
            elif new is not None:
                others.append(new)
                new = None
        if others:
            kept.append(group | {"hooks": others})
    return kept


def _with_hooks(settings: dict[str, Any], hooks: dict[str, list[Any]]) -> dict[str, Any]:
    """`hooks` in place of the settings' own; a `hooks` that only ours filled goes."""
    if hooks or settings.get("hooks") == {}:
        return settings | {"hooks": hooks}
    return {name: value for name, value in settings.items() if name != "hooks"}


def ours_in(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Our hook of each event that has one."""
    found: dict[str, dict[str, Any]] = {}
    for event, groups in settings.get("hooks", {}).items():
        for hook in (h for g in groups for h in _hooks_of(g)):
            if is_ours(hook) and event not in found:
                found[event] = hook
    return found


def save(path: Path, settings: dict[str, Any]) -> Path | None:
    """Write `settings` atomically, the file as it was first copied beside it; the
    copy's path (None for a new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
    backup = None
    mode = 0o644
    if path.exists():
        mode = path.stat().st_mode & 0o7777
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        _write_new(backup, path.read_bytes(), mode)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_new(temporary, text.encode(), mode)
    os.replace(temporary, path)
    return backup


def _write_new(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def keep_token(path: Path, token: str | None) -> None:
    """Make sure the token file at `path` holds a token only its owner can read: written
    (mode 0600) from `token` when given; else it must exist already."""
    if token:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, (token.strip() + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError as exc:
        raise SettingsError(
            f"no token file at {path}: pass --token (or set ${TOKEN_ENV}) to write it"
        ) from exc
    if mode & 0o077:
        raise SettingsError(
            f"the token file {path} can be read by others (mode {mode:o}): chmod 600 {path}"
        )


# Claude Code's own OpenTelemetry export, pointed at the server (`install --telemetry`):
# variables under the settings' `env`, marked as ours by TELEMETRY_MARK, and the token
# from an `otelHeadersHelper` command that reads the token file, never from the file.
TELEMETRY_MARK = "SESSION_BUDDY_TELEMETRY"
HEADERS_HELPER = "otelHeadersHelper"


def telemetry_env(server_base: str) -> dict[str, str]:
    """What makes Claude Code report to the server at `server_base` (no /mcp)."""
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": server_base,
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        TELEMETRY_MARK: "1",
    }


def headers_helper(token_file: str) -> str:
    """The command Claude Code runs for its export's headers: the bearer token."""
    return shlex.join([*hook_executable(), "claude-code", "otel-headers", token_file])


def _helper_is_ours(command: Any) -> bool:
    return isinstance(command, str) and "claude-code otel-headers" in command


def _env_of(settings: dict[str, Any]) -> dict[str, Any]:
    env = settings.get("env", {})
    if not isinstance(env, dict):
        raise SettingsError("`env` is not an object; the file was left as it is")
    return env


def with_telemetry(
    settings: dict[str, Any], env: dict[str, str], helper: str | None
) -> dict[str, Any]:
    """`settings` with our telemetry variables (in place of ours from before) and our
    headers helper; SettingsError when the file sends Claude Code's telemetry elsewhere
    already (its own variables, or a helper of its own, are never overwritten)."""
    kept = without_telemetry(settings)
    theirs = {
        name: value for name, value in _env_of(kept).items() if name in env and value != env[name]
    }
    if theirs:
        name, value = next(iter(theirs.items()))
        raise SettingsError(
            f"`env` sets {name}={value} already (telemetry of your own): left as it is; "
            "remove it, or point Claude Code's telemetry at session-buddy yourself"
        )
    if helper and kept.get(HEADERS_HELPER):
        raise SettingsError(f"{HEADERS_HELPER} is set already (one of your own): left as it is")
    changed = kept | {"env": {**_env_of(kept), **env}}
    if helper:
        changed[HEADERS_HELPER] = helper
    return changed


def without_telemetry(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` without our telemetry variables and headers helper."""
    env = _env_of(settings)
    kept = dict(settings)
    if TELEMETRY_MARK in env:
        ours = telemetry_env("")
        env = {name: value for name, value in env.items() if name not in ours}
        if env:
            kept["env"] = env
        else:
            kept.pop("env", None)
    if _helper_is_ours(kept.get(HEADERS_HELPER)):
        del kept[HEADERS_HELPER]
    return kept


def telemetry_in(settings: dict[str, Any]) -> str | None:
    """Where our telemetry variables send Claude Code's telemetry, if they are there."""
    env = _env_of(settings)
    return str(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")) if TELEMETRY_MARK in env else None
