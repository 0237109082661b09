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
import socket
import sys
import time
from urllib.parse import urlsplit

from session_buddy.config import Settings
from session_buddy.wire import MAX_HOOK_PAYLOAD_BYTES, ORIGIN_KEY

HOOK_PATH = "/hooks/claude-code"
OUTCOME_HEADER = b"session-buddy-outcome"
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
    parts = urlsplit(server_url)
    if parts.scheme != "http" or not parts.hostname:
        raise NotQuick(f"{parts.scheme} server")
    base = parts.path.rstrip("/")
    base = base[: -len("/mcp")] if base.endswith("/mcp") else base
    return parts.hostname, parts.port or 80, parts.netloc, base + HOOK_PATH


def has_backlog(spool_path: str, destination: str) -> bool:
    """Are events for `destination` waiting in the spool (read-only; an unreadable or
    old-style spool counts as a backlog, for the full hook to deal with)?"""
    if os.path.exists(os.path.join(os.path.dirname(spool_path), "spool.jsonl")):
        return True
    if not os.path.exists(spool_path):
        return False
    import sqlite3  # only starts and ends look: a heartbeat never waits

    try:
        with sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True, timeout=0.1) as spool:
            row = spool.execute(
                "SELECT n FROM queues WHERE destination = ? AND state = 'pending'",
                (destination,),
            ).fetchone()
    except sqlite3.Error:
        return True
    return bool(row and row[0])


def post(server_url: str, token: str | None, body: bytes, timeout: float) -> tuple[int, bytes]:
    """POST `body` to the hook endpoint; (status, the outcome header or the body)."""
    host, port, netloc, path = hook_url(server_url)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
                connection.settimeout(max(0.001, deadline - time.monotonic()))
    except OSError as exc:
        raise NotQuick(str(exc)) from exc
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *headers = head.split(b"\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError) as exc:
        raise NotQuick("not an HTTP answer") from exc
    for header in headers:
        name, _, value = header.partition(b":")
        if name.strip().lower() == OUTCOME_HEADER:
            return status, value.strip()
    return status, content


def quick_hook(args: list[str]) -> str | list[str]:
    """What happened, in one line; or, when the full hook must take over, the arguments
    it runs with (with the time left) — stdin then holds the payload again."""
    try:
        flags = parse_flags(args)
    except NotQuick:
        return args
    settings = Settings.from_environment()
    server_url = flags.get("--server-url") or settings.server_url
    timeout = float(flags.get("--timeout", HOOK_TIMEOUT))
    started = time.monotonic()
    raw = sys.stdin.buffer.read(MAX_HOOK_PAYLOAD_BYTES + 1)
    try:
        if not server_url:
            raise NotQuick("no server")
        payload = json.loads(raw)
        event = payload.get("hook_event_name") if isinstance(payload, dict) else None
        if event in KEPT_IN_ORDER and has_backlog(str(settings.spool_path), server_url):
            raise NotQuick("older events are waiting in the spool")
        if event == "SessionStart":
            from session_buddy.client.events import launcher_facts  # platform, getpass

            payload[ORIGIN_KEY] = launcher_facts()
            raw = json.dumps(payload).encode()
        token = flags.get("--token") or settings.token
        status, said = post(server_url, token, raw, timeout)
        if status == 200:
            return said.decode("ascii", "replace")
        if status == 400:  # the payload is wrong: the full hook would say the same
            return f"session-buddy hook: {json.loads(said).get('error')}"
        raise NotQuick(f"HTTP {status}")
    except (NotQuick, ValueError):
        sys.stdin = io.TextIOWrapper(io.BytesIO(raw))
        left = max(0.05, timeout - (time.monotonic() - started))
        kept = [f"{name}={value}" for name, value in flags.items() if name != "--timeout"]
        return [*kept, f"--timeout={left:.3f}"]
