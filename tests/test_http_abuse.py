"""A real server process probed as an attacker would: unauthenticated session floods,
idle and slow connections, unbounded metric labels, oversized and deeply nested bodies."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from conftest import start_payload
from mcp_helpers import INITIALIZE, http_client, http_server, mint_token, server_env, structured

SECRET = "hardening-secret-0123456789abcdefghijklmnop"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def token(database_url: str, scope: str) -> str:
    return mint_token(database_url, SECRET, scope)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextmanager
def secured(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """A server with a secret; (base URL, its pid, its database URL)."""
    database_url = f"sqlite:///{tmp_path / 'abuse.db'}"
    with http_server(database_url, SESSION_BUDDY_SECRET=SECRET) as (base, process):
        yield base, process.pid, database_url


async def test_unauthenticated_initializes_hold_nothing(tmp_path: Path) -> None:
    with secured(tmp_path) as (base, pid, database_url):
        write = token(database_url, "sessions:read sessions:write")
        with httpx2.Client(headers=MCP_HEADERS) as warm:
            for _ in range(200):  # the server's own caches and pools, before measuring
                warm.post(f"{base}/mcp", json=INITIALIZE)
        before = rss_kib(pid)

        def flood(count: int) -> set[int]:
            with httpx2.Client(headers=MCP_HEADERS) as client:
                return {
                    client.post(f"{base}/mcp", json=INITIALIZE).status_code for _ in range(count)
                }

        with ThreadPoolExecutor(4) as pool:
            statuses = set().union(*pool.map(flood, [2500] * 4))
        after = rss_kib(pid)
        assert statuses == {200}  # answered, each on its own: no session handed out
        assert after - before < 30 * 1024, f"RSS grew {(after - before) / 1024:.0f} MiB"
        async with http_client(base, write) as client:  # a valid client is served
            started = structured(await client.call_tool("track_session_start", start_payload()))
            assert started["status"] == "tracked"


def test_idle_and_slow_connections_are_closed(tmp_path: Path) -> None:
    with secured(tmp_path) as (base, _, _):
        port = int(base.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(500)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        for connection in slow:
            connection.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        began = time.monotonic()
        open_ones = set(range(len(slow)))
        while open_ones and time.monotonic() - began < 20:  # a header line every second
            time.sleep(1)
            for index in list(open_ones):
                try:
                    slow[index].sendall(b"X-Slow: 1\r\n")
                except OSError:
                    open_ones.discard(index)
        assert not open_ones, f"{len(open_ones)} slow connections still open after 20 s"
        for connection in idle:
            connection.settimeout(5)
            assert connection.recv(1) == b""  # closed by the server
            connection.close()
        for connection in slow:
            connection.close()
        assert httpx2.get(f"{base}/healthz").status_code == 200


def test_past_the_cap_the_longest_idle_connection_makes_room(tmp_path: Path) -> None:
    with secured(tmp_path) as (base, _, _):
        port = int(base.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        held[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held[-1].recv(12) == b"HTTP/1.1 200"  # the server has taken them all
        assert httpx2.get(f"{base}/healthz").status_code == 200  # the newcomer is served
        held[0].settimeout(5)
        assert held[0].recv(1) == b""  # the one quiet longest was closed for it
        for connection in held:
            connection.close()


async def test_metrics_need_a_read_token_and_keep_labels_bounded(tmp_path: Path) -> None:
    with secured(tmp_path) as (base, _, database_url):
        read, write = token(database_url, "sessions:read"), token(database_url, "sessions:write")
        refused = httpx2.get(f"{base}/metrics")
        assert refused.status_code == 401 and refused.json()["error_code"] == "unauthorized"
        forbidden = httpx2.get(f"{base}/metrics", headers={"Authorization": f"Bearer {write}"})
        assert forbidden.status_code == 403 and forbidden.json()["error_code"] == "forbidden"
        async with http_client(base, write) as client:
            for number in range(150):
                event = start_payload(component_name=f"c{number}", pid=1000 + number)
                structured(await client.call_tool("track_session_start", event))
        scraped = httpx2.get(f"{base}/metrics", headers={"Authorization": f"Bearer {read}"})
        assert scraped.status_code == 200
        [started] = [
            family
            for family in text_string_to_metric_families(scraped.text)
            if family.name == "session_buddy_sessions_started"
        ]
        counts = {
            sample.labels["component"]: sample.value
            for sample in started.samples
            if sample.name.endswith("_total")
        }
        assert len(counts) == 101 and counts["other"] == 50
        assert sum(counts.values()) == 150


def test_one_body_limit_and_one_refusal_shape(tmp_path: Path) -> None:
    with secured(tmp_path) as (base, _, database_url):
        write = token(database_url, "sessions:write")
        big = b"{" + b" " * (1024 * 1024) + b"}"
        auth = {"Authorization": f"Bearer {write}"}
        for path, headers in [
            ("/mcp", auth | MCP_HEADERS),
            ("/mcp", MCP_HEADERS),
            ("/hooks/claude-code", auth),
            ("/healthz", {}),
            ("/nowhere", {}),
        ]:
            answer = httpx2.post(f"{base}{path}", content=big, headers=headers)
            assert answer.status_code == 413, path
            assert answer.json() == {
                "error": "request body over 1 MiB",
                "error_code": "payload_too_large",
            }
        nested = b"[" * 200_000 + b"]" * 200_000
        for path in ("/mcp", "/hooks/claude-code"):
            answer = httpx2.post(f"{base}{path}", content=nested, headers=auth | MCP_HEADERS)
            assert answer.status_code == 400, path
            assert answer.json()["error_code"] == "invalid_json"
        bad_token = httpx2.post(
            f"{base}/mcp", json=INITIALIZE, headers={"Authorization": "Bearer nope"} | MCP_HEADERS
        )
        assert bad_token.status_code == 401 and bad_token.json()["error_code"] == "unauthorized"
        hook = {"session_id": "x", "hook_event_name": "Nope"}
        bad_hook = httpx2.post(f"{base}/hooks/claude-code", json=hook, headers=auth)
        assert bad_hook.status_code == 400
        assert set(bad_hook.json()) == {"error", "error_code"}
        assert httpx2.get(f"{base}/healthz").status_code == 200


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'busy.db'}"
    with http_server(database_url) as (base, _):
        port = base.rsplit(":", 1)[1]
        second = subprocess.run(
            [sys.executable, "-m", "session_buddy", "serve", "--http", "--port", port],
            env=server_env(database_url),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert second.returncode == 2
    [line] = [text for text in second.stderr.splitlines() if "session-buddy:" in text]
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "Traceback" not in second.stderr and "serving MCP" not in second.stderr


def test_start_up_failures_name_the_store_in_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    unreachable = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    for url, named in [(f"sqlite:///{corrupt}", str(corrupt)), (unreachable, "postgres:***@")]:
        served = subprocess.run(
            [sys.executable, "-m", "session_buddy", "serve", "--http", "--port", "0"],
            env=server_env(url),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert served.returncode == 2, served.stderr
        assert named in served.stderr and "hunter2" not in served.stderr
        assert "Traceback" not in served.stderr
        assert len(served.stderr.strip().splitlines()) == 1, served.stderr
    assert corrupt.read_bytes() == b"this is not a database" * 100  # left as it was


def test_a_valid_token_is_never_locked_out_by_a_flood(tmp_path: Path) -> None:
    """Unauthenticated clients that open and hold MCP sessions cannot use up the
    sessions of a client with a token."""
    with secured(tmp_path) as (base, _, database_url):
        write = token(database_url, "sessions:write")
        with httpx2.Client(headers=MCP_HEADERS) as client:
            held = {
                client.post(f"{base}/mcp", json=INITIALIZE).headers.get("mcp-session-id")
                for _ in range(300)
            }
        assert held == {None}  # no session handed out without a verified header
        auth = MCP_HEADERS | {"Authorization": f"Bearer {write}"}
        with httpx2.Client(headers=auth) as client:
            answer = client.post(f"{base}/mcp", json=INITIALIZE | {"id": str(uuid.uuid4())})
        assert answer.status_code == 200 and answer.headers.get("mcp-session-id")
        assert json.loads(answer.text)["result"]["serverInfo"]["name"] == "session-buddy"


def test_every_start_up_refusal_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    home = tmp_path / "home"
    home.mkdir()  # a new user's: empty
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        refusals = {
            "refusing to listen on 0.0.0.0 without SESSION_BUDDY_SECRET": (
                ["--host", "0.0.0.0", "--port", "0"],
                {},
            ),
            f"cannot listen on 127.0.0.1:{busy}": (["--port", busy], {}),
            "SESSION_BUDDY_RETENTION='soon'": (
                ["--port", "0"],
                {"SESSION_BUDDY_RETENTION": "soon"},
            ),
        }
        for said, (flags, env) in refusals.items():
            served = subprocess.run(
                [sys.executable, "-m", "session_buddy", "serve", "--http", *flags],
                env=server_env(url, HOME=str(home), **env),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert served.returncode == 2, served.stderr
            assert served.stderr.startswith("session-buddy: ") and said in served.stderr
            assert len(served.stderr.strip().splitlines()) == 1, served.stderr
