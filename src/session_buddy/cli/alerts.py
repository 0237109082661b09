"""`session-buddy alerts`: the rules that tell people when a session needs them, kept in
the store so that every server sees the same ones; channel URLs are shown masked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from session_buddy.cli.app import (
    Target,
    console,
    json_option,
    main,
    print_json,
    read_tool,
    transport_options,
)
from session_buddy.cli.when import Span
from session_buddy.core.alerts import CONDITIONS, DEFAULT_BELOW, DEFAULT_FACTOR, DEFAULT_FOR

TIMEOUT = 30.0


@main.group()
def alerts() -> None:
    """Notify people when a session waits for them, fails, crashes or gets stuck."""


@alerts.command("add")
@click.argument("name")
@click.option("--when", "condition", type=click.Choice(CONDITIONS), required=True)
@click.option(
    "--for",
    "for_span",
    type=Span(bare_seconds=True),
    help=f"waiting: for this long (default {DEFAULT_FOR['waiting']:.0f}s); stuck: working "
    f"but silent this long (default {DEFAULT_FOR['stuck'] / 60:.0f}m).",
)
@click.option(
    "--factor",
    type=float,
    help=f"stuck: longer than this many times the component's p90 (default {DEFAULT_FACTOR:g}).",
)
@click.option(
    "--below", type=float, help=f"crash-rate: crash-free percent (default {DEFAULT_BELOW:g})."
)
@click.option("--component", "component_name", help="Only sessions of this component.")
@click.option("--host", "hostname", help="Only sessions on this host.")
@click.option("--user", "username", help="Only sessions of this user.")
@click.option("--cwd", "cwd_prefix", help="Only sessions in this directory or below it.")
@click.option(
    "--notify",
    "channels",
    multiple=True,
    required=True,
    help="An Apprise URL (ntfy://, slack://, mailto://, json://, ...); repeat for more.",
)
@click.option("--resolved", is_flag=True, help="Also notify when the condition clears.")
@click.option("--replace", is_flag=True, help="Replace a rule of the same name.")
@transport_options(timeout=TIMEOUT)
def add_command(
    name: str, for_span: timedelta | None, channels: tuple[str, ...], target: Target, **options: Any
) -> None:
    """Add the rule NAME."""
    arguments = {name: value for name, value in options.items() if value not in (None, False)}
    arguments |= {"name": name, "channels": list(channels)}
    if for_span is not None:
        arguments["for_seconds"] = for_span.total_seconds()
    try:
        result = read_tool(target, "add_alert_rule", arguments, read_only=False)
    except click.ClickException as exc:
        raise click.ClickException(_in_flags(exc.message)) from None
    if result["status"] == "exists":
        raise click.ClickException(f"an alert rule named {name} exists: use --replace")
    click.echo(f"{result['status']}: {name}")


# The tool's argument names as the flags that give them, in error messages.
_FLAGS = {
    "for_seconds": "--for",
    "channels": "--notify",
    "component_name": "--component",
    "hostname": "--host",
    "username": "--user",
    "cwd_prefix": "--cwd",
    "condition": "--when",
    "factor": "--factor",
    "below": "--below",
}


def _in_flags(message: str) -> str:
    for argument, flag in _FLAGS.items():
        if message.startswith(f"{argument}:") or message.startswith(f"{argument} #"):
            return flag + message[len(argument) :]
    return message


@alerts.command("list")
@json_option
@transport_options(timeout=TIMEOUT)
def list_command(as_json: bool, target: Target) -> None:
    """The rules, their open alerts and what is still to be delivered."""
    rules = read_tool(target, "list_alert_rules", {})["rules"]
    if as_json:
        print_json(rules)
        return
    if not rules:
        click.echo("no alert rules: add one with `session-buddy alerts add`")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "when", "only", "notify", "open", "pending"):
        table.add_column(column, no_wrap=column in ("name", "open", "pending"))
    for rule in rules:
        pending = str(rule["pending"])
        if rule["last_error"]:
            pending += f" ({rule['last_error']})"
        table.add_row(
            rule["name"],
            _when(rule),
            _only(rule),
            "\n".join(rule["channels"]),
            str(rule["open_alerts"]),
            pending,
        )
    console().print(table)


def _when(rule: dict[str, Any]) -> str:
    condition = str(rule["condition"])
    if rule["for_seconds"] is not None:
        condition += f" {rule['for_seconds']:g}s"
    if rule["factor"] is not None:
        condition += f" ×{rule['factor']:g}"
    if rule["below"] is not None:
        condition += f" <{rule['below']:g}%"
    return condition + (" (+resolved)" if rule["resolved"] else "")


def _only(rule: dict[str, Any]) -> str:
    labels = (("component", "component_name"), ("host", "hostname"), ("user", "username"))
    only = [f"{label} {rule[name]}" for label, name in labels if rule[name]]
    if rule["cwd_prefix"]:
        only.append(f"cwd {rule['cwd_prefix']}")
    return ", ".join(only) or "-"


@alerts.command("remove")
@click.argument("name")
@transport_options(timeout=TIMEOUT)
def remove_command(name: str, target: Target) -> None:
    """Remove the rule NAME (its open alerts clear without notice)."""
    result = read_tool(target, "remove_alert_rule", {"name": name}, read_only=False)
    if result["status"] == "not_found":
        raise click.ClickException(f"no alert rule named {name}")
    click.echo(f"removed: {name}")


@alerts.command("test")
@click.argument("name")
@json_option
@transport_options(timeout=TIMEOUT)
def test_command(name: str, as_json: bool, target: Target) -> None:
    """Send a test notice through every channel of the rule NAME now."""
    result = read_tool(target, "test_alert_rule", {"name": name})
    if as_json:
        print_json(result)
    if result["status"] == "not_found":
        raise click.ClickException(f"no alert rule named {name}")
    if not as_json:
        for channel in result["channels"]:
            said = "sent" if channel["ok"] else f"FAILED: {channel['error']}"
            click.echo(f"{channel['channel']}: {said}")
    if result["status"] != "sent":
        raise SystemExit(1)
