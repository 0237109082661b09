"""The Claude Code command hook's quick path: one POST of the payload to the server's
`/hooks/claude-code`, loading only light standard modules, so that a hook call costs
little more than starting Python (Claude Code runs one on every hook event).

It takes the common case only: a plain `http://` server, options it knows, and for a
start or an end no older events of that server waiting in the spool (order matters
there; a heartbeat is never spooled). Everything else — and a server that cannot be
reached, answers 5xx or refuses the token — goes to the full hook in the CLI, which
spools, with the payload replayed and what is left of the time budget.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from urllib.parse import urlsplit

from session_buddy.client.http11 import Connection, HttpError, Reply, request_bytes
from session_buddy.config import Settings, normalized_server_url
from session_buddy.timestamps import now_iso
from session_buddy.wire import MAX_HOOK_PAYLOAD_BYTES, ORIGIN_KEY, new_event_id

HOOK_PATH = "/hooks/claude-code"
OUTCOME_HEADER = "session-buddy-outcome"
MAX_REPLY = 64 * 1024  # the endpoint answers `{}` and a one-line header
FLAGS = ("--server-url", "--token", "--timeout")
HOOK_TIMEOUT = 0.4  # seconds per send: `hook claude-code --timeout` defaults to it
KEPT_IN_ORDER = ("SessionStart", "SessionEnd", "SubagentStart", "SubagentStop")


class NotQuick(Exception):
    """The quick path cannot finish this call; the full hook takes over."""


def parse_flags(args: list[str]) -> dict[str, str]:
    """`--flag value` and `--flag=value` for FLAGS; anything else is not for the quick
    path (the CLI parses it, and says what is wrong)."""
    given: dict[str, str] = {}
    rest = list(args)
    while rest:
        name, _, value = rest.pop(0).partition("=")
        if name not in FLAGS:
            raise NotQuick(name)
        if not value:
            if not rest:
                raise NotQuick(name)
            value = rest.pop(0)
        given[name] = value
    return given


def hook_url(server_url: str) -> tuple[str, int, str, str]:
    """(host, port, Host header, path) of the hook endpoint beside an MCP URL."""
    parts = urlsplit(normalized_server_url(server_url))
    if parts.scheme != "http" or not parts.hostname:
        raise NotQuick(f"{parts.scheme} server")
    base = parts.path.removesuffix("/mcp")
    return parts.hostname, parts.port or 80, parts.netloc, base + HOOK_PATH


def has_backlog(spool_path: str, destination: str) -> bool:
    """Are events for `destination` waiting in the spool (read-only; an unreadable or
    old-style spool counts as a backlog, for the full hook to deal with)?"""
    if os.path.exists(os.path.join(os.path.dirname(spool_path), "spool.jsonl")):
        return True
    if not os.path.exists(spool_path):
        return False
    import sqlite3  # only when a spool exists

    try:
        with sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True, timeout=0.1) as spool:
            row = spool.execute(
                "SELECT n FROM queues WHERE destination = ? AND state = 'pending'",
                (destination,),
            ).fetchone()
    except sqlite3.Error:
        return True
    return bool(row and row[0])


def post(server_url: str, token: str | None, body: bytes, timeout: float) -> Reply:
    """POST `body` to the hook endpoint, the whole exchange within `timeout`."""
    host, port, netloc, path = hook_url(server_url)
    headers = {"Content-Type": "application/json", "Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = request_bytes("POST", path, netloc, headers, body)
    return Connection(host, port).exchange(request, timeout=timeout, max_reply=MAX_REPLY)


def confirmed(reply: Reply) -> str | None:
    """What the server says it did, when its reply says so: a 200 with the outcome
    header and a JSON object for a body. Anything else confirms nothing."""
    said = reply.headers.get(OUTCOME_HEADER)
    if reply.status != 200 or said is None:
        return None
    try:
        return said if isinstance(json.loads(reply.body), dict) else None
    except ValueError:
        return None


def refused(reply: Reply) -> str | None:
    """The server's reason when it refused the payload itself (a 400 in our shape)."""
    if reply.status != 400:
        return None
    try:
        answer = json.loads(reply.body)
    except ValueError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) else None


def stamped(payload: dict[str, object]) -> bytes:
    """The payload with the hook's own stamp: its time and an event id (and for a
    SessionStart, Claude Code's process), so every try of it is the same event."""
    stamp: dict[str, object] = {"timestamp": now_iso(), "event_id": new_event_id()}
    if payload.get("hook_event_name") == "SessionStart":
        from session_buddy.client.events import launcher_facts  # platform, getpass

        stamp = launcher_facts() | stamp
    return json.dumps(payload | {ORIGIN_KEY: stamp}).encode()


def quick_hook(args: list[str]) -> str | list[str]:
    """What happened, in one line; or, when the full hook must take over, the arguments
    it runs with (with the time left) — stdin then holds the stamped payload."""
    try:
        flags = parse_flags(args)
    except NotQuick:
        return args
    settings = Settings.from_environment()
    server_url = normalized_server_url(flags.get("--server-url") or settings.server_url or "")
    timeout = float(flags.get("--timeout", HOOK_TIMEOUT))
    started = time.monotonic()
    raw = sys.stdin.buffer.read(MAX_HOOK_PAYLOAD_BYTES + 1)
    unconfirmed = ""
    try:
        payload = json.loads(raw)
        if not isinstance(payload, dict) or ORIGIN_KEY in payload:
            raise NotQuick("not a payload to stamp")
        raw = stamped(payload)
        if not server_url:
            raise NotQuick("no server")
        event = payload.get("hook_event_name")
        if event in KEPT_IN_ORDER and has_backlog(str(settings.spool_path), server_url):
            raise NotQuick("older events are waiting in the spool")
        token = flags.get("--token") or settings.token
        reply = post(server_url, token, raw, timeout)
        said = confirmed(reply) or refused(reply)
        if said is not None:
            return said if reply.status == 200 else f"session-buddy hook: {said}"
        unconfirmed = f"HTTP {reply.status} without a confirmation"
        raise NotQuick(unconfirmed)
    except HttpError as exc:
        unconfirmed = str(exc)  # it may have been taken: the retry is the same event
    except (NotQuick, ValueError, RecursionError):
        pass
    sys.stdin = io.TextIOWrapper(io.BytesIO(raw))
    left = max(0.05, timeout - (time.monotonic() - started))
    kept = [f"{name}={value}" for name, value in flags.items() if name != "--timeout"]
    told = [f"--unconfirmed={unconfirmed}"] if unconfirmed else []
    return [*kept, f"--timeout={left:.3f}", *told]
