"""The Claude Code command hook, `session-buddy hook claude-code`: what Claude Code runs
on every hook event, so it loads only the standard library and session-buddy's own light
modules (no pydantic, asyncio or click); `benchmarks/bench_claude_hook.py` times it.

For each payload it reads on stdin:

1. it stamps it with its own time and a new event id, and the facts of Claude Code's
   process (pid past the `sh -c` wrapper, user, host, Claude Code's version; a start
   keeps them), so that however often and whichever way it goes, it is one event;
2. the destination is the server (`--server-url`, `$SESSION_BUDDY_SERVER_URL`), else the
   store (`--database-url`, `$SESSION_BUDDY_DATABASE_URL`, the default SQLite file);
3. the hook relay delivers it when one answers (`hook_relay.py`: the payload goes
   unparsed over a Unix socket to a process that has everything loaded);
4. else, with no older events of that destination in the spool, it is delivered now:
   one POST to the server's `/hooks/claude-code`, or one durable write into the store;
5. otherwise (older events wait, or this one could not be delivered now) it goes through
   the spool's courier: in order behind the older ones, spooled when it cannot go now.

It always exits 0 and says on stderr, in one line, what happened.
"""

from __future__ import annotations

import os
import sys

from session_buddy import config, wire

TYPE_CHECKING = False  # see session_buddy.lazy
if TYPE_CHECKING:
    from typing import Any

    from session_buddy.client.hook_delivery import Delivery

FLAGS = ("--server-url", "--database-url", "--token", "--token-file", "--timeout")
HOOK_TIMEOUT = 0.6  # seconds for delivering now; Claude Code waits 1.5 s, we take 1 in all
STARTS = ("SessionStart", "SubagentStart")
_KINDS = {"SessionStart": "start", "SubagentStart": "start", "SessionEnd": "end"} | {
    "SubagentStop": "end"
}


class Unusual(Exception):
    """Arguments the hook does not take: the full command line says what is wrong."""


def parse_flags(args: list[str]) -> dict[str, str]:
    """`--flag value` and `--flag=value` for FLAGS; Unusual for anything else."""
    given: dict[str, str] = {}
    rest = list(args)
    while rest:
        name, _, value = rest.pop(0).partition("=")
        if name not in FLAGS:
            raise Unusual(name)
        if not value:
            if not rest:
                raise Unusual(name)
            value = rest.pop(0)
        given[name] = value
    return given


def run(args: list[str]) -> str | None:
    """Record the payload on stdin; the line to say, or None when the arguments are not
    the hook's (the full command line then explains them)."""
    try:
        flags = parse_flags(args)
    except Unusual:
        return None
    raw = sys.stdin.buffer.read(wire.MAX_HOOK_PAYLOAD_BYTES + 1)
    try:
        token = flags.get("--token") or _token_file(flags) or config.token_of()
        within = float(flags.get("--timeout", HOOK_TIMEOUT))
    except ValueError as exc:
        return f"session-buddy hook: {exc}"
    if len(raw) > wire.MAX_HOOK_PAYLOAD_BYTES:
        return f"session-buddy hook: payload over {wire.MAX_HOOK_PAYLOAD_BYTES} bytes"
    destination = _destination(flags)
    if destination.startswith("stdio:"):
        return "session-buddy hook: it reports to an http(s) server or a database, not stdio"
    stamp = stamp_now()
    answer = None
    if os.environ.get(config.RELAY_IDLE_ENV) != "0":
        from session_buddy.client import hook_relay

        answer = hook_relay.ask(destination, stamp, raw, token=token, within=within)
        if answer is not None and answer[0] == wire.DELIVERED:
            return answer[1]
    payload = parsed(raw)
    if isinstance(payload, str):
        return payload
    stamped = payload | {wire.ORIGIN_KEY: origin_for(payload, stamp)}
    if answer is not None:  # older events wait, or it could not go now: the courier
        tried = None if answer[0] == "waiting" else _delivery(*answer)
        return _by_courier(flags, destination, token, stamped, tried)
    if waiting(destination):
        return _by_courier(flags, destination, token, stamped, None)
    from session_buddy.client.hook_delivery import deliver

    delivered = deliver(destination, stamped, token=token, within=within)
    if delivered.outcome == wire.DELIVERED:
        return delivered.said
    return _by_courier(flags, destination, token, stamped, delivered)


def _delivery(outcome: str, said: str) -> Delivery:
    from session_buddy.client.hook_delivery import Delivery

    return Delivery(outcome, said)


def parsed(raw: bytes) -> dict[str, Any] | str:
    """The payload as a JSON object, or what is wrong with it."""
    import json

    try:
        payload = json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:
        return f"session-buddy hook: payload is not JSON: {exc}"
    if not isinstance(payload, dict):
        return "session-buddy hook: payload must be a JSON object"
    return payload


def stamp_now() -> dict[str, Any]:
    """The hook's own time and a new event id, and the facts of Claude Code's process:
    however often and whichever way the payload goes, it is one event."""
    return {"timestamp": wire.stamp_time(), "event_id": wire.new_event_id()} | claude_facts()


def origin_for(payload: dict[str, Any], stamp: dict[str, Any]) -> dict[str, Any]:
    """What a payload carries of the stamp: all of it for a start, else time and id."""
    if payload.get("hook_event_name") in STARTS:
        return stamp
    return {"timestamp": stamp["timestamp"], "event_id": stamp["event_id"]}


def claude_facts() -> dict[str, Any]:
    """Claude Code's process (past the `sh -c` it runs hooks with), its user and host, and
    Claude Code itself where its environment says (not this hook's Python)."""
    from session_buddy.processes import launcher_pid

    version = os.environ.get("AI_AGENT", "")  # e.g. claude-code_2-1-197_harness
    version = version.split("_")[1].replace("-", ".") if version.count("_") >= 2 else ""
    entrypoint = os.environ.get("CLAUDE_CODE_ENTRYPOINT", "")
    platform = " ".join(part for part in ("Claude Code", version) if part)
    return {
        "pid": launcher_pid(),
        "username": _username()[:100],
        "home": os.path.expanduser("~")[:500],
        "hostname": os.uname().nodename[:255] or "unknown",
        "python_version": "",
        "platform": (f"{platform} ({entrypoint})" if entrypoint else platform)[:255],
    }


def _username() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or "unknown"


def _token_file(flags: dict[str, str]) -> str | None:
    path = flags.get("--token-file")
    return config.read_token_file(path) if path else None


def _destination(flags: dict[str, str]) -> str:
    """The server URL, else the database URL (a relative SQLite path made absolute)."""
    server_url = flags.get("--server-url") or os.environ.get(config.SERVER_URL_ENV)
    if server_url:
        return config.normalized_server_url(server_url)
    url = flags.get("--database-url") or config.database_url()
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
        url = prefix + os.path.abspath(url[len(prefix) :])
    return url


def waiting(destination: str) -> bool:
    """Do older events of `destination` wait in the spool? (Read-only; an unreadable
    spool, or an old-style one, counts as waiting: the courier deals with it.)"""
    spool = config.spool_path()
    if os.path.exists(os.path.join(os.path.dirname(spool), "spool.jsonl")):
        return True
    if not os.path.exists(spool):
        return False
    import sqlite3

    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=0.1) as queue:
            row = queue.execute(
                "SELECT n FROM queues WHERE destination = ? AND state = 'pending'",
                (destination,),
            ).fetchone()
    except sqlite3.Error:
        return True
    return bool(row and row[0])


def _by_courier(
    flags: dict[str, str],
    destination: str,
    token: str | None,
    stamped: dict[str, Any],
    delivered: Delivery | None,
) -> str:
    """In order through the spool: behind older events, or kept when it could not go
    now (`delivered` says why). The line says what became of it."""
    import time
    from pathlib import Path

    from session_buddy.client.delivery import Courier, hook_attempt, token_identity
    from session_buddy.client.outcomes import Outcome
    from session_buddy.client.spool import Destination, Spool
    from session_buddy.client.transports import open_transport

    server_url = destination if destination.startswith(("http://", "https://")) else None
    database_url = None if server_url else destination
    left = float(flags.get("--timeout", HOOK_TIMEOUT))
    transport = open_transport(server_url, database_url, token=token, timeout=left)
    spool = Spool(Path(config.spool_path()), max_pending=config.spool_max())
    courier = Courier(
        transport, spool, Destination(destination, token_identity(token)), token=token
    )
    began = time.monotonic()
    try:
        sent = courier.hook(stamped, hook_attempt(delivered) if delivered else None)
    finally:
        spool.close()
        transport.close()
    first = f"{delivered.said}; " if delivered and delivered.outcome != "refused" else ""
    if sent.outcome is Outcome.DELIVERED:
        return str(sent.result.get("said"))
    kind = _KINDS.get(str(stamped.get("hook_event_name")), "activity")
    if sent.spooled:
        behind = "" if delivered else f" behind older events ({time.monotonic() - began:.1f} s)"
        return f"{first}spooled the {kind} for later{behind}"
    return f"{kind} not recorded: {sent.reason}"
