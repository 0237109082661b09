"""One Claude Code hook payload, stamped by the hook (`wire.ORIGIN_KEY`), delivered to
where it goes: the server's `POST /hooks/claude-code`, or straight into the store (one
durable write from this process, no server). The hook and `spool flush` share it; the
same payload delivered twice is one event (its stamp's time and event id).

Light on purpose (the standard library, and the store's modules only for a store): the
hook runs this on every Claude Code event.
"""

from __future__ import annotations

import json

from session_buddy.config import normalized_server_url
from session_buddy.wire import CREDENTIALS, DELIVERED, REFUSED, TRANSIENT

TYPE_CHECKING = False  # see session_buddy.lazy
if TYPE_CHECKING:
    from typing import Any

HOOK_PATH = "/hooks/claude-code"
OUTCOME_HEADER = "session-buddy-outcome"
MAX_REPLY = 64 * 1024  # the endpoint answers `{}` and a one-line header


class Delivery:
    """What became of one delivery: an outcome (above) and a line for people."""

    __slots__ = ("outcome", "said")

    def __init__(self, outcome: str, said: str) -> None:
        self.outcome, self.said = outcome, said


def deliver(
    destination: str,
    payload: dict[str, Any],
    *,
    token: str | None,
    within: float,
    keep_open: bool = False,
) -> Delivery:
    """Deliver a stamped payload to a server URL or a database URL, within `within` s
    (`keep_open`: an SQLite store's connection stays open for the next delivery)."""
    if destination.startswith(("http://", "https://")):
        return _to_server(destination, payload, token, within)
    return _to_store(destination, payload, within, keep_open)


def hook_endpoint(server_url: str) -> tuple[str, int, str, str, bool]:
    """(host, port, Host header, path, TLS) of the hook endpoint beside an MCP URL."""
    scheme, _, rest = normalized_server_url(server_url).partition("://")
    netloc, _, path = rest.partition("/")
    if netloc.startswith("["):  # an IPv6 literal: [::1]:8678
        host, _, port = netloc[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = netloc.partition(":")
    tls = scheme == "https"
    base = f"/{path}".removesuffix("/mcp").rstrip("/")
    return (
        host,
        int(port) if port.isdigit() else (443 if tls else 80),
        netloc,
        base + HOOK_PATH,
        tls,
    )


def _to_server(url: str, payload: dict[str, Any], token: str | None, within: float) -> Delivery:
    from session_buddy.client.http11 import Connection, HttpError, request_bytes  # 3 ms

    host, port, netloc, path, tls = hook_endpoint(url)
    headers = {"Content-Type": "application/json", "Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = request_bytes("POST", path, netloc, headers, json.dumps(payload).encode())
    try:
        reply = Connection(host, port, tls=tls).exchange(
            request, timeout=within, max_reply=MAX_REPLY
        )
    except HttpError as exc:
        if exc.sent:  # it may have been taken: the retry is the same event
            return Delivery(TRANSIENT, f"sent, unconfirmed ({exc})")
        return Delivery(TRANSIENT, f"not sent: {exc}")
    said = reply.headers.get(OUTCOME_HEADER)
    if reply.status == 200 and said is not None and _json_object(reply.body) is not None:
        return Delivery(DELIVERED, said)
    refusal = _json_object(reply.body) or {}
    reason = refusal.get("error") if isinstance(refusal.get("error"), str) else None
    if reply.status in (401, 403):
        return Delivery(CREDENTIALS, f"refused by {url}: {reason or f'HTTP {reply.status}'}")
    if reply.status == 400 and reason:
        return Delivery(REFUSED, f"refused: {reason}")
    return Delivery(TRANSIENT, f"sent, unconfirmed (HTTP {reply.status} without a confirmation)")


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _to_store(
    database_url: str, payload: dict[str, Any], within: float, keep_open: bool
) -> Delivery:
    """One durable write of the step into the store (made and migrated if need be)."""
    import sqlite3

    from session_buddy.app import claude_code
    from session_buddy.core.errors import InvalidArgument
    from session_buddy.timestamps import now_micros

    try:
        step = claude_code.step(claude_code.checked_payload(payload))
    except (claude_code.HookPayloadError, InvalidArgument) as exc:
        return Delivery(REFUSED, f"refused: {exc}")
    facts = step.origin or {}

    def work(tx: Any) -> dict[str, Any]:
        return claude_code.record_in_store(tx, step, facts, now_micros())

    try:
        result = _write_once(database_url, work, within, keep_open)
    except InvalidArgument as exc:
        return Delivery(REFUSED, f"{step.kind} not recorded: {exc}")
    except (OSError, sqlite3.Error, ValueError) as exc:
        return Delivery(TRANSIENT, f"the store {_where(database_url)} cannot be written now: {exc}")
    return Delivery(DELIVERED, claude_code.describe(step, result))


def _write_once(database_url: str, work: Any, within: float, keep: bool) -> dict[str, Any]:
    scheme, _, rest = database_url.partition("://")
    if scheme.split("+")[0] == "sqlite" and rest.startswith("/") and rest != "/":
        from session_buddy.core.store.sqlite_connection import write_once

        return write_once(rest[1:].split("?")[0], work, within=within, keep=keep)
    from session_buddy.core.store.postgres import write_once_postgres

    return write_once_postgres(database_url, work, within=within)


def _where(database_url: str) -> str:
    from session_buddy.config import without_password

    return without_password(database_url)
