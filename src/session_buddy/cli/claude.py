"""`session-buddy claude-code install | uninstall | status`: Claude Code's hooks, set up
in one command (see client/claude_settings.py for what is written and how)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click

from session_buddy import config
from session_buddy.cli.app import Target, main, print_json, read_tool
from session_buddy.client import claude_settings as cs
from session_buddy.client.claude_hook import HOOK_TIMEOUT, Unusual, parse_flags

scope_option = click.option(
    "--scope",
    type=click.Choice(cs.SCOPES),
    default="user",
    show_default=True,
    help="user: ~/.claude/settings.json; project: .claude/settings.json (shared); "
    "local: .claude/settings.local.json (this checkout only).",
)
project_option = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="The project, for --scope project or local (default: here).",
)


@main.group("claude-code")
def claude_code() -> None:
    """Report Claude Code's sessions: its hooks, installed into its settings."""


@claude_code.command("install")
@scope_option
@project_option
@click.option("--server-url", help="Report to this server (http(s)://host:8678/mcp).")
@click.option("--database-url", help="Report to this store (default: the embedded one).")
@click.option(
    "--token",
    help="The server's token, written to --token-file (mode 0600), never into the "
    "settings (default: $SESSION_BUDDY_TOKEN).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file the hook reads the token from (default with a token: "
    "$XDG_CONFIG_HOME/session-buddy/token).",
)
@click.option(
    "--http-activity",
    is_flag=True,
    help="Activity events as HTTP hooks to the server (no process per event; not spooled "
    "while the server is down). Starts and ends stay command hooks.",
)
@click.option(
    "--telemetry",
    is_flag=True,
    help="Also send Claude Code's own OpenTelemetry (cost, tokens, tools) to the server: "
    "its variables under `env` in the settings, the token through an otelHeadersHelper.",
)
def install(
    scope: str,
    project_dir: Path,
    server_url: str | None,
    database_url: str | None,
    token: str | None,
    token_file: Path | None,
    http_activity: bool,
    telemetry: bool,
) -> None:
    """Write session-buddy's hooks into Claude Code's settings: merged with the hooks
    there (never removing one), in place of an older install of ours; the file as it was
    is kept beside it. Running it again changes nothing."""
    if server_url and database_url:
        raise click.UsageError("give --server-url or --database-url, not both")
    for flag, given in (("--http-activity", http_activity), ("--telemetry", telemetry)):
        if given and not server_url:
            raise click.UsageError(f"{flag} needs --server-url")
    flags: dict[str, str] = {}
    if server_url:
        flags["--server-url"] = config.normalized_server_url(server_url)
    elif database_url:
        flags["--database-url"] = _storable_database_url(database_url)
    token = token or (os.environ.get(config.TOKEN_ENV) if server_url else None)
    if token or token_file:
        token_file = (token_file or _default_token_file()).expanduser().absolute()
        _or_usage(lambda: cs.keep_token(token_file, token))
        flags["--token-file"] = str(token_file)
    ours = {event: cs.command_hook(flags) for event in cs.EVENTS}
    if http_activity and server_url:
        base = flags["--server-url"].removesuffix("/mcp")
        ours |= {event: cs.http_hook(base, bool(token_file)) for event in cs.ACTIVITY}
    path = cs.settings_path(scope, project_dir)
    settings = _or_usage(lambda: cs.load(path))
    changed = _or_usage(lambda: cs.without_telemetry(cs.with_ours(settings, ours)))
    if telemetry:
        base = flags["--server-url"].removesuffix("/mcp")
        helper = cs.headers_helper(str(token_file)) if token_file else None
        changed = _or_usage(lambda: cs.with_telemetry(changed, cs.telemetry_env(base), helper))
    if changed == settings:
        click.echo(f"already installed in {path}: nothing changed")
    else:
        backup = _or_usage(lambda: cs.save(path, changed))
        kept = f" (the file as it was: {backup})" if backup else ""
        also = " and Claude Code's telemetry" if telemetry else ""
        click.echo(f"installed {len(ours)} hooks{also} in {path}{kept}")
    if http_activity and token_file:
        click.echo(f"the HTTP hooks send ${config.TOKEN_ENV} from Claude Code's environment")
    _compile_package()
    _report(_state_of(scope, path), flags)


@claude_code.command("uninstall")
@scope_option
@project_option
def uninstall(scope: str, project_dir: Path) -> None:
    """Remove session-buddy's hooks (and only those) from Claude Code's settings."""
    path = cs.settings_path(scope, project_dir)
    settings = _or_usage(lambda: cs.load(path))
    changed = _or_usage(lambda: cs.without_telemetry(cs.without_ours(settings)))
    if changed == settings:
        click.echo(f"no session-buddy hooks in {path}: nothing changed")
        return
    backup = _or_usage(lambda: cs.save(path, changed))
    click.echo(f"removed session-buddy's hooks from {path} (the file as it was: {backup})")


@claude_code.command("otel-headers")
@click.argument("token_file", type=click.Path(dir_okay=False, path_type=Path))
def otel_headers(token_file: Path) -> None:
    """Print the headers of Claude Code's OpenTelemetry export, as its otelHeadersHelper
    asks: the bearer token of TOKEN_FILE (mode 0600)."""
    try:
        token = config.read_token_file(str(token_file))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    print_json({"Authorization": f"Bearer {token}"})


@claude_code.command("status")
@project_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def status(project_dir: Path, as_json: bool) -> None:
    """What is installed in each settings file, whether the hook reaches its store or
    server, and the last Claude Code event seen there."""
    states = [_state_of(scope, cs.settings_path(scope, project_dir)) for scope in cs.SCOPES]
    installed = [state for state in states if state["events"]]
    reach = _reach(installed[0]["flags"]) if installed else None
    if as_json:
        print_json({"settings": states, "destination": reach})
        return
    for state in states:
        _echo_state(state)
    if reach is None:
        click.echo("not installed: run `session-buddy claude-code install`")
        return
    _echo_reach(reach)


def _report(state: dict[str, Any], flags: dict[str, str]) -> None:
    _echo_state(state)
    _echo_reach(_reach(flags))


def _state_of(scope: str, path: Path) -> dict[str, Any]:
    """Our hooks in one settings file: events, the command, its flags, what is missing."""
    state: dict[str, Any] = {"scope": scope, "path": str(path), "events": [], "flags": {}}
    try:
        settings = cs.load(path)
        ours = cs.ours_in(settings)
        state["telemetry"] = cs.telemetry_in(settings)
    except cs.SettingsError as exc:
        return state | {"problem": str(exc)}
    commands = [hook["command"] for hook in ours.values() if hook.get("type") == "command"]
    state["events"] = list(ours)
    state["missing"] = [event for event in cs.EVENTS if event not in ours] if ours else []
    state["http"] = [event for event, hook in ours.items() if hook.get("type") == "http"]
    if commands:
        words = shlex.split(commands[0])
        at = words.index("claude-code")
        state["command"] = commands[0]
        state["runs"] = os.access(words[0], os.X_OK)
        try:
            state["flags"] = parse_flags(words[at + 1 :])
        except Unusual as exc:
            state["problem"] = f"the hook command has an unknown flag: {exc}"
    return state


def _reach(flags: dict[str, str]) -> dict[str, Any]:
    """Where the installed hook reports, whether it can, and the last Claude event there."""
    server_url = flags.get("--server-url")
    database_url = flags.get("--database-url") or config.database_url()
    reach: dict[str, Any] = {"destination": server_url or config.without_password(database_url)}
    try:
        token = config.read_token_file(flags["--token-file"]) if "--token-file" in flags else None
    except ValueError as exc:
        return reach | {"reachable": False, "problem": str(exc)}
    store_file = database_url.removeprefix("sqlite:///").split("?")[0]
    if not server_url and database_url.startswith("sqlite:///") and not os.path.exists(store_file):
        return reach | {"reachable": True, "last_event": None, "note": "made at the first event"}
    target = Target(server_url, database_url, token, HOOK_TIMEOUT * 5, Path(), 0)
    try:
        health = read_tool(target, "health_check", {})
        page = read_tool(target, "list_sessions", {"component_name": "claude-code", "limit": 50})
    except click.ClickException as exc:
        return reach | {"reachable": False, "problem": exc.message}
    except Exception as exc:  # the store cannot be opened, the URL is malformed
        return reach | {"reachable": False, "problem": str(exc)}
    seen = [s for s in page.get("sessions", []) if s.get("last_seen_at")]
    last = max(seen, key=lambda s: str(s["last_seen_at"]), default=None)
    reach |= {"reachable": True, "health": health.get("status"), "last_event": None}
    if last is not None:
        reach["last_event"] = {
            key: last.get(key)
            for key in ("last_seen_at", "session_id", "status", "activity", "activity_detail")
        }
    return reach


def _echo_state(state: dict[str, Any]) -> None:
    where = f"{state['scope']:<8}{state['path']}"
    if state.get("problem"):
        click.echo(f"{where}: {state['problem']}")
    elif not state["events"]:
        click.echo(f"{where}: no session-buddy hooks")
    else:
        http = f", {len(state['http'])} of them HTTP" if state.get("http") else ""
        missing = f"; missing: {', '.join(state['missing'])}" if state["missing"] else ""
        click.echo(f"{where}: {len(state['events'])} hooks{http}{missing}")
        if "command" in state:
            runs = "" if state["runs"] else "  (NOT FOUND or not executable: install again)"
            click.echo(f"        runs {state['command']}{runs}")
    if state.get("telemetry"):
        click.echo(f"        Claude Code's telemetry goes to {state['telemetry']}")


def _echo_reach(reach: dict[str, Any]) -> None:
    if not reach.get("reachable"):
        click.echo(f"reports to {reach['destination']}: CANNOT REACH it: {reach['problem']}")
        return
    health = f" ({reach['health']})" if reach.get("health") else ""
    click.echo(f"reports to {reach['destination']}: reachable{health}")
    last = reach.get("last_event")
    if last is None:
        note = f" ({reach['note']})" if "note" in reach else ""
        click.echo(f"last event seen: none yet{note}")
        return
    doing = "/".join(str(last[k]) for k in ("status", "activity", "activity_detail") if last[k])
    click.echo(f"last event seen: {last['last_seen_at']} in {last['session_id']} ({doing})")


def _storable_database_url(url: str) -> str:
    """A database URL fit for a settings file: absolute, and without a password."""
    if config.without_password(url) != url:
        raise click.UsageError(
            "the database URL holds a password, which would be written into the settings "
            "file: keep it in ~/.pgpass (or $PGPASSFILE) instead"
        )
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
        return prefix + os.path.abspath(url[len(prefix) :])
    return url


def _default_token_file() -> Path:
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(home) / "session-buddy" / "token"


def _or_usage(work: Any) -> Any:
    try:
        return work()
    except (cs.SettingsError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


def _compile_package() -> None:
    """Byte-compile session-buddy once, so that no hook run compiles it again (with
    PYTHONDONTWRITEBYTECODE set, each would); a read-only install is left as it is."""
    import compileall

    package = Path(__file__).resolve().parent.parent
    compileall.compile_dir(str(package), quiet=2, workers=1)
