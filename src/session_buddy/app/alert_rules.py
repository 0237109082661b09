"""Alert rules as tools: checked arguments in, stored rules out, channels only masked.

The CLI's `alerts` commands call these through the tool table, on the store itself or
on a server (--server-url), like every other data command.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from typing import Any

from pydantic import BaseModel, Field

from session_buddy.app import channels
from session_buddy.app.alerting import notice
from session_buddy.app.arguments import Failure, text_argument
from session_buddy.app.service import SessionService
from session_buddy.core import alerts
from session_buddy.core.errors import InvalidArgument

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_CHANNELS = 10
MAX_URL = 2000
MAX_FOR_SECONDS = 30 * 86_400.0
# Which condition each option means something for.
_ONLY_FOR = {"for_seconds": ("waiting", "stuck"), "factor": ("stuck",), "below": ("crash-rate",)}


class RuleShown(BaseModel):
    name: str
    condition: str
    for_seconds: float | None
    below: float | None
    factor: float | None
    component_name: str | None
    hostname: str | None
    username: str | None
    cwd_prefix: str | None
    channels: list[str] = Field(description="Masked: the URLs hold secrets")
    resolved: bool
    open_alerts: int
    pending: int = Field(description="Notices not delivered yet")
    last_error: str | None


class RuleList(Failure):
    rules: list[RuleShown]
    status: str = "ok"


class RuleChange(Failure):
    name: str
    status: str = Field(description="added, replaced, removed, not_found, exists or error")


class ChannelTried(BaseModel):
    channel: str
    ok: bool
    error: str | None


class RuleTest(Failure):
    name: str
    status: str = Field(description="sent (every channel took it), failed, not_found or error")
    channels: list[ChannelTried] = Field(default_factory=list)


def rule_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidArgument(
            "name",
            "name: 1 to 64 letters, digits, '.', '_' or '-', starting with one of the first two",
        )
    return value


def _number(name: str, value: Any, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(name, f"{name}: must be a number")
    if not low <= value <= high:
        raise InvalidArgument(name, f"{name}: must be between {low:g} and {high:g}")
    return float(value)


def _cwd_prefix(value: Any) -> str | None:
    prefix = text_argument("cwd_prefix", value, max_length=255)
    if prefix is None:
        return None
    if not prefix.startswith("/"):
        raise InvalidArgument("cwd_prefix", "cwd_prefix: must be an absolute path")
    return prefix.rstrip("/") or None  # "/" is every directory


def _channels(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or len(value) > MAX_CHANNELS:
        raise InvalidArgument("channels", f"channels: 1 to {MAX_CHANNELS} Apprise URLs")
    for url in value:
        if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL:
            raise InvalidArgument(
                "channels", f"channels: each an Apprise URL of at most {MAX_URL} characters"
            )
    urls = [url.strip() for url in value]
    channels.check(urls)
    return tuple(urls)


def parse_rule(arguments: dict[str, Any], now_us: int) -> alerts.AlertRule:
    """A rule from tool arguments, each checked; InvalidArgument names the wrong one."""
    condition = arguments.get("condition")
    if condition not in alerts.CONDITIONS:
        raise InvalidArgument("condition", f"condition: one of {', '.join(alerts.CONDITIONS)}")
    for option, conditions in _ONLY_FOR.items():
        if arguments.get(option) is not None and condition not in conditions:
            raise InvalidArgument(option, f"{option}: applies to {' and '.join(conditions)} only")
    return alerts.AlertRule(
        name=rule_name(arguments.get("name")),
        condition=condition,
        channels=_channels(arguments.get("channels")),
        for_seconds=_number("for_seconds", arguments.get("for_seconds"), 0, MAX_FOR_SECONDS),
        below=_number("below", arguments.get("below"), 0, 100),
        factor=_number("factor", arguments.get("factor"), 0.1, 1000),
        component_name=text_argument(
            "component_name", arguments.get("component_name"), max_length=255
        ),
        hostname=text_argument("hostname", arguments.get("hostname"), max_length=255),
        username=text_argument("username", arguments.get("username"), max_length=255),
        cwd_prefix=_cwd_prefix(arguments.get("cwd_prefix")),
        resolved=arguments.get("resolved") is True,
        created_us=now_us,
    )


def shown(summary: alerts.RuleSummary) -> RuleShown:
    rule = summary.rule
    fields = rule._asdict() | {"channels": [channels.mask(url) for url in rule.channels]}
    del fields["created_us"]
    return RuleShown(
        **fields,
        open_alerts=summary.open_alerts,
        pending=summary.pending,
        last_error=summary.last_error,
    )


async def list_rules(service: SessionService) -> dict[str, Any]:
    found = await service.manager.store.read(alerts.summaries)
    return RuleList(rules=[shown(summary) for summary in found]).model_dump(mode="json")


async def add_rule(service: SessionService, arguments: dict[str, Any]) -> dict[str, Any]:
    manager = service.manager
    rule = parse_rule(arguments, manager.clock())
    replace = arguments.get("replace") is True
    added = await manager.store.write(lambda tx: alerts.save_rule(tx, rule, replace=replace))
    status = ("replaced" if replace else "added") if added else "exists"
    if not added:
        message = f"an alert rule named {rule.name} exists: remove it, or replace it"
        return RuleChange(name=rule.name, status=status, error=message).model_dump(mode="json")
    return RuleChange(name=rule.name, status=status).model_dump(mode="json")


async def remove_rule(service: SessionService, arguments: dict[str, Any]) -> dict[str, Any]:
    name, manager = rule_name(arguments.get("name")), service.manager
    now = manager.clock()
    removed = await manager.store.write(lambda tx: alerts.remove_rule(tx, name, now))
    return RuleChange(name=name, status="removed" if removed else "not_found").model_dump()


async def test_rule(service: SessionService, arguments: dict[str, Any]) -> dict[str, Any]:
    """Send a test notice through every channel of a rule, now, from this process."""
    name = rule_name(arguments.get("name"))
    found = [rule for rule in await service.manager.store.read(alerts.rules) if rule.name == name]
    if not found:
        return RuleTest(name=name, status="not_found").model_dump()
    rule = found[0]
    facts = {"reason": f"a test of the alert rule {name} ({rule.condition}): this channel works"}
    title, body = notice("test", name, "test", facts, None)
    key = f"session-buddy-test-{uuid.uuid4().hex[:12]}"
    tried = []
    for url in rule.channels:
        sent = await asyncio.to_thread(channels.send, url, title, body, key)
        tried.append(ChannelTried(channel=sent.channel, ok=sent.ok, error=sent.error))
    status = "sent" if all(channel.ok for channel in tried) else "failed"
    return RuleTest(name=name, status=status, channels=tried).model_dump()
