"""The server against peers that are sick or hostile (issue 21, server side): a database
that goes away, a disk whose fsync stalls, pipelined and idle connections, clients that
fill the MCP sessions, huge event logs, long windows, prune beside writers, control
characters, forged log lines, other subjects' Claude sessions and foreign origins. The
figures in comments are the review's, before."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import postgres_schema, start_payload
from mcp_helpers import (
    INITIALIZE,
    call,
    free_port,
    http_client,
    http_server,
    mint_token,
    run_cli,
    server_env,
)
from pg_proxy import postgres_proxy
from sick_peers import slow_fsync_library

SECRET = "a-secret-of-at-least-thirty-two-bytes!"
CLAUDE = "6e1f0c2d-9a8b-4c7d-8e6f-5a4b3c2d1e0f"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def timed(method: str, url: str, **options: Any) -> tuple[httpx2.Response, float]:
    began = time.monotonic()
    response = httpx2.request(method, url, timeout=30, **options)
    return response, time.monotonic() - began


def test_a_lost_database_is_said_within_seconds() -> None:
    """Before: with PostgreSQL unreachable, /healthz, the tools, the hook endpoint and the
    pages answered after 57-58 s and never said `degraded`; with the database gone,
    /healthz took 2 min 30 s. Now: degraded within 2 s, each face answers at once."""
    with (
        postgres_schema() as url,
        postgres_proxy(url) as (proxy, proxied),
        # The reaper's writes tell the server the database is back, without traffic.
        http_server(proxied, SESSION_BUDDY_REAP_INTERVAL="1") as (base, _),
    ):
        assert httpx2.get(f"{base}/healthz").json()["status"] == "ok"
        for fault in (proxy.refuse, proxy.hang):
            fault()
            health, took = timed("GET", f"{base}/healthz")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert took < 3.0, f"{fault.__name__}: /healthz took {took:.1f} s"
            page, took = timed("GET", f"{base}/")
            assert page.status_code == 503 and took < 3.0, (page.status_code, took)
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert "store unavailable" in page.text
            hooked, took = timed(
                "POST",
                f"{base}/hooks/claude-code",
                json={"session_id": CLAUDE, "hook_event_name": "Stop"},
            )
            assert hooked.status_code == 503 and took < 3.0, (hooked.status_code, took)
            began = time.monotonic()
            answer = asyncio.run(start_over_mcp(base))
            assert answer["error_code"] == "store_unavailable"
            assert time.monotonic() - began < 4.0
            proxy.heal()
            deadline = time.monotonic() + 15
            while httpx2.get(f"{base}/healthz").status_code != 200:
                assert time.monotonic() < deadline, "not ok again after the database is back"
                time.sleep(0.2)


async def start_over_mcp(base: str, token: str | None = None) -> dict[str, Any]:
    async with http_client(base, token) as client:
        return await call(client, "track_session_start", start_payload(event_id=str(uuid.uuid4())))


def test_a_stalled_fsync_holds_up_writes_only(tmp_path: Path) -> None:
    """Before: with fsync at 800 ms, a /healthz sent during a start answered after 658 ms
    (a lone write committed on the event loop's thread). Now a write never runs there:
    /healthz and reads answer while the write waits for its fsync."""
    library = slow_fsync_library(tmp_path)
    if library is None:
        pytest.skip("needs a C compiler for the fsync shim")
    switch = tmp_path / "fsync-ms"
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    env = {"LD_PRELOAD": str(library), "SLOW_FSYNC_SWITCH": str(switch)}
    with http_server(database, **env) as (base, _):
        switch.write_text("800")
        answered: dict[str, float] = {}

        def start() -> None:
            asyncio.run(start_over_mcp(base))
            answered["start"] = time.monotonic()

        writer = threading.Thread(target=start)
        began = time.monotonic()
        writer.start()
        time.sleep(0.2)  # the start is in its fsync now
        health, took_health = timed("GET", f"{base}/healthz")
        listed, took_list = timed("GET", f"{base}/sessions")
        answered["reads"] = time.monotonic()
        writer.join()
        switch.unlink()
    assert health.status_code == 200 and listed.status_code == 200
    assert answered["reads"] < answered["start"], "the reads waited for the write"
    assert took_health < 0.4 and took_list < 0.4, (took_health, took_list)
    assert answered["start"] - began >= 0.8  # the write did wait for its fsync


def test_a_pipelined_head_does_not_escape_the_read_deadline(tmp_path: Path) -> None:
    """Before: a request head pipelined behind a first request escaped the 10 s read
    deadline; 1000 such connections kept /healthz failing past 30 s."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    with http_server(database) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        pipelined = (
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"  # and the body never comes
        )
        held = []
        for _ in range(200):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(pipelined)
            held.append(connection)
        began = time.monotonic()
        assert httpx2.get(f"{base}/healthz").status_code == 200
        for connection in held:
            connection.settimeout(max(0.1, began + 15 - time.monotonic()))
            received = b""
            try:
                while chunk := connection.recv(65536):
                    received += chunk
            except TimeoutError:
                pytest.fail(f"a connection was still open {time.monotonic() - began:.1f} s on")
            assert received.startswith(b"HTTP/1.1 200")  # the first request was answered
            connection.close()
        assert time.monotonic() - began < 15


def test_idle_connections_never_crowd_out_a_token_holder(tmp_path: Path) -> None:
    """Before: ~1000 idle unauthenticated connections, reopened as they were closed, left
    a token holder 1 success in 40 /healthz calls."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    token = mint_token(database, SECRET, "sessions:read sessions:write")
    with http_server(database, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        stop = threading.Event()
        crowd = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]

        def reopen() -> None:  # the attacker opens a new one for each the server closes
            while not stop.is_set():
                for index, connection in enumerate(crowd):
                    connection.setblocking(False)
                    try:
                        if connection.recv(1) == b"":
                            connection.close()
                            crowd[index] = socket.create_connection(("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                    except OSError:
                        crowd[index] = socket.create_connection(("127.0.0.1", port))
                time.sleep(0.01)

        attacker = threading.Thread(target=reopen, daemon=True)
        attacker.start()
        answered = 0
        for _ in range(40):
            try:
                response = httpx2.get(
                    f"{base}/healthz", headers={"Authorization": f"Bearer {token}"}, timeout=5
                )
                answered += response.status_code == 200
            except httpx2.TransportError:
                pass
        stop.set()
        attacker.join()
        for connection in crowd:
            connection.close()
    assert answered == 40, f"{answered} of 40"


def initialize(base: str, token: str | None = None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(f"{base}/mcp", json=INITIALIZE, headers=headers, timeout=10)


def test_mcp_sessions_make_room_for_a_token_holder(tmp_path: Path) -> None:
    """Before: any token holder (read-only too), or anyone without a secret, could fill
    the 256 MCP sessions; the next initialize got 503."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    reader = mint_token(database, SECRET, "sessions:read")
    writer = mint_token(database, SECRET, "sessions:write")
    with http_server(database, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        opened = [initialize(base, reader) for _ in range(300)]
        assert {r.status_code for r in opened} == {200}  # the reader's oldest make room
        mine = initialize(base, writer)
        assert mine.status_code == 200 and mine.headers.get("mcp-session-id")
        anonymous = initialize(base)  # served, but statelessly: it holds nothing
        assert anonymous.status_code == 200 and "mcp-session-id" not in anonymous.headers
    open_database = f"sqlite:///{tmp_path / 'open.db'}"
    with http_server(open_database) as (base, _):  # no secret: every caller keeps one
        assert {initialize(base).status_code for _ in range(300)} == {200}


async def test_the_dashboard_reads_and_renders_bounded_pages(tmp_path: Path) -> None:
    """Before: a session with 2000 repeated 60 KiB ends rendered a 120.9 MB page (RSS
    82 -> 677 MB); a custom window from 1970 took 1.1-3.4 s; a store failure gave a bare
    500 with no CSP."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    big = {"exit_code": 0, "note": "x" * 60_000}
    with http_server(database) as (base, process):
        async with http_client(base) as client:
            started = await call(client, "track_session_start", start_payload())
            for _ in range(400):
                end = {"session_id": started["session_id"], "timestamp": "2026-02-06T13:00:00Z"}
                await call(client, "track_session_end", end | {"metadata": big})
        before = rss_kib(process.pid)
        page = httpx2.get(f"{base}/sessions/{started['session_id']}", timeout=30)
        grew = rss_kib(process.pid) - before
        assert page.status_code == 200
        assert len(page.content) < 1_000_000, f"{len(page.content):,} bytes"
        assert grew < 50 * 1024, f"RSS grew {grew // 1024} MiB"
        assert "later events" in page.text
        window, took = timed("GET", f"{base}/?started_after=1970-01-01T00:00:00Z")
        assert window.status_code == 400 and "at most 31 days" in window.text
        assert took < 1.0 and "default-src 'none'" in window.headers["content-security-policy"]


async def test_prune_leaves_writers_their_turn(tmp_path: Path) -> None:
    """Before: with writers beside a prune in another process, their p99 went from 38.7
    to 1,965 ms (SQLite's own lock wait backs off to 100 ms while prune takes the lock
    again at once). Now prune leaves the lock free between batches and a waiting writer
    takes it: writes go on between the batches (benchmarks/bench_retention.py has the
    latencies)."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    with http_server(database) as (base, _):
        async with http_client(base) as client:
            for number in range(3000):  # finished sessions of 2020, to prune
                old = start_payload(
                    event_id=str(uuid.uuid4()),
                    timestamp=f"2020-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}Z",
                    component_name=f"old{number // 3600}",
                    pid=10_000 + number,
                )
                done = await call(client, "track_session_start", old)
                stamp = old["timestamp"].replace("2020-01-01", "2020-01-02")
                await call(
                    client,
                    "track_session_end",
                    {"session_id": done["session_id"], "timestamp": stamp},
                )
            pruning = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "session_buddy", "prune", "--before", "2021-01-01", "--json",
                env=server_env(database), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            writes = 0
            while pruning.returncode is None:
                await call(client, "track_session_start", start_payload(event_id=str(uuid.uuid4())))
                writes += 1
                await asyncio.sleep(0)
                with suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pruning.wait()), 0.001)
            report = json.loads((await pruning.communicate())[0])
    assert report["sessions"] == 3000
    assert writes >= report["batches"] / 2, (writes, report["batches"])


def test_every_refusal_has_one_shape(tmp_path: Path) -> None:
    """Before: 404, 405 and an oversized head answered text/plain; WWW-Authenticate
    quoted inside a quoted-string."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    with http_server(database, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        shapes = {
            "no such path": httpx2.get(f"{base}/nope"),
            "wrong method": httpx2.post(f"{base}/healthz"),
            "control character": httpx2.get(f"{base}/sessions/a%0d%0aSet-Cookie:x"),
            "oversized head": httpx2.get(f"{base}/healthz", headers={"X-Big": "y" * 70_000}),
            "bad token": httpx2.post(
                f"{base}/mcp", json=INITIALIZE, headers={"Authorization": 'Bearer a"b.c.d'}
            ),
        }
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"GARBAGE\x00REQUEST\r\n\r\n")
            malformed = raw.recv(65536)
    expected = {
        "no such path": (404, "not_found"),
        "wrong method": (405, "method_not_allowed"),
        "control character": (400, "invalid_request"),
        "oversized head": (431, "headers_too_large"),
        "bad token": (401, "unauthorized"),
    }
    for name, response in shapes.items():
        assert (response.status_code, response.json()["error_code"]) == expected[name], name
        assert set(response.json()) == {"error", "error_code"}, name
    challenge = shapes["bad token"].headers["www-authenticate"]
    quoted = r'"(?:[^"\\]|\\.)*"'
    assert re.fullmatch(rf'Bearer realm="session-buddy"(, \w+={quoted})*', challenge), challenge
    head, _, body = malformed.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error_code"] == "invalid_request"


def test_a_client_cannot_forge_a_log_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    log = tmp_path / "server.log"
    forged = "x\n2026-01-01 00:00:00,000 INFO session_buddy: FORGED\x1b[2J"
    with http_server(database, log=log) as (base, _):
        asyncio.run(end_over_mcp(base, forged))
    text = log.read_text()
    assert "FORGED" in text  # it is in the log, written out
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in text.splitlines())
    assert "\x1b" not in text


async def end_over_mcp(base: str, session_id: str) -> dict[str, Any]:
    async with http_client(base) as client:
        end = {"session_id": session_id, "timestamp": "2026-02-06T13:00:00Z"}
        return await call(client, "track_session_end", end)


@contextmanager
def claude_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with a secret, and tokens of alice, bob (both may write) and an admin."""
    database = f"sqlite:///{tmp_path / 'claude.db'}"
    tokens = {}
    for name, scope in (("alice", "write"), ("bob", "write"), ("ops", "write admin")):
        scopes = " ".join(f"sessions:{s}" for s in scope.split())
        created = run_cli(
            database,
            *("token", "create", "--scope", scopes, "--subject", name),
            SESSION_BUDDY_SECRET=SECRET,
        )
        tokens[name] = created.stdout.split()[-1]
    with http_server(database, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        yield base, tokens


def hook(tmp_path: Path, base: str, token: str, payload: dict[str, Any]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy", "hook", "claude-code"],
        input=json.dumps({"session_id": CLAUDE} | payload),
        env=server_env(
            f"sqlite:///{tmp_path / 'unused.db'}",
            SESSION_BUDDY_SERVER_URL=f"{base}/mcp",
            SESSION_BUDDY_TOKEN=token,
            SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db"),
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    return done.stderr


def test_a_claude_session_belongs_to_the_subject_that_started_it(tmp_path: Path) -> None:
    """Before: Bob's write token could end, or mark as waiting, Alice's Claude session."""
    with claude_server(tmp_path) as (base, tokens):
        said = hook(tmp_path, base, tokens["alice"], {"hook_event_name": "SessionStart"})
        assert "tracked" in said, said
        waiting = httpx2.post(
            f"{base}/hooks/claude-code",
            json={"session_id": CLAUDE, "hook_event_name": "Notification",
                  "notification_type": "permission_prompt"},
            headers={"Authorization": f"Bearer {tokens['bob']}"},
        )  # fmt: skip
        assert waiting.status_code == 403 and waiting.json()["error_code"] == "forbidden"
        said = hook(tmp_path, base, tokens["bob"], {"hook_event_name": "SessionEnd"})
        assert "ended" not in said and "another subject" in said, said
        status = asyncio.run(claude_status(base, tokens["ops"]))
        assert status == ("active", None)  # neither Bob's end nor his wait took
        said = hook(tmp_path, base, tokens["ops"], {"hook_event_name": "SessionEnd"})
        assert "ended Claude session" in said, said  # an admin may
        assert asyncio.run(claude_status(base, tokens["ops"]))[0] == "ended"


async def claude_status(base: str, token: str) -> tuple[str, str | None]:
    from session_buddy.app.auth import TokenAuthority

    reader = TokenAuthority(SECRET).create(["sessions:read"], subject="reader")
    async with http_client(base, reader) as client:
        page = await call(client, "list_sessions", {"external_id": CLAUDE})
    [session] = page["sessions"]
    return session["status"], session["activity"]


def test_hook_ids_with_control_characters_are_refused_whole(tmp_path: Path) -> None:
    """Before: CR/LF/NUL in a Claude session id dropped the connection (the echoed header
    was refused by h11), and non-printable ids were stored as external_id=None."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    with http_server(database) as (base, _):
        for bad in ("a\r\nb", "a\x00b", "a\tb"):
            body = {"session_id": bad, "hook_event_name": "SessionEnd"}
            answer = httpx2.post(f"{base}/hooks/claude-code", json=body)
            assert answer.status_code == 400, bad
            assert "session_id must be printable" in answer.json()["error"]
        listed = run_cli(database, "sessions", "list", "--json").stdout
        assert json.loads(listed)["sessions"] == []


def test_the_origin_check_counts_the_port(tmp_path: Path) -> None:
    """Before: the Origin check ignored the port, so a page on localhost:3000 could write
    to a server without a secret."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    port = free_port()
    with http_server(database, port=port) as (base, _):
        headers = {"Accept": "application/json, text/event-stream"}
        for origin, allowed in (
            ("http://localhost:3000", False),
            (f"http://127.0.0.1:{port + 1}", False),
            (f"http://127.0.0.1:{port}", True),
        ):
            answer = httpx2.post(
                f"{base}/mcp", json=INITIALIZE, headers=headers | {"Origin": origin}
            )
            assert (answer.status_code == 200) is allowed, (origin, answer.status_code)
            if not allowed:
                assert answer.json()["error_code"] == "invalid_origin"
