"""Helpers for driving real session-buddy servers from tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from session_buddy.app.metrics import SessionMetrics
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp.server import build_mcp_server

# A raw MCP initialize request, for tests that speak the protocol by hand.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env.update({"SESSION_BUDDY_DATABASE_URL": database_url, "SESSION_BUDDY_LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def run_cli(
    database_url: str, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """`session-buddy ARGS` on `database_url` (exit 0 checked unless `check` is off)."""
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy", *args],
        env=server_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def mint_token(database_url: str, secret: str, scope: str) -> str:
    """A token from `session-buddy token create` for a server with `secret`."""
    created = run_cli(
        database_url, "token", "create", "--scope", scope, SESSION_BUDDY_SECRET=secret
    )
    return created.stdout.split()[-1]


@contextmanager
def http_server(
    database_url: str, *args: str, log: Path | None = None, port: int | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`session-buddy serve --http` on `port` (default: a free one); yields (base URL,
    process)."""
    port = port or free_port()
    stderr = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "session_buddy", "serve", "--http", "--port", str(port), *args],
        env=server_env(database_url, **env),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
        if log:
            stderr.close()  # type: ignore[union-attr]


def wait_until_serving(base: str, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Until the server at `base` answers /healthz; RuntimeError if its process ends or
    `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx2.get(f"{base}/healthz", timeout=1).status_code in (200, 503):
                return
        except httpx2.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start (exit code {process.poll()})")
        time.sleep(0.05)


def http_client(base: str, token: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(
        f"{base}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    return Client(transport)


def in_memory(manager: SessionLifecycleManager, metrics: SessionMetrics | None = None) -> Client:
    """The official client connected to a server in this process (no transport)."""
    return Client(build_mcp_server(SessionService(manager, metrics=metrics)))


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return structured(await client.call_tool(tool, arguments))


def structured(result: Any) -> dict[str, Any]:
    """A tool result's structured content, checked to match its JSON text."""
    import json

    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return dict(result.structured_content)


def spooled(path: Path, *states: str) -> list[dict[str, Any]]:
    """The records waiting in a spool (or in the given states), oldest first."""
    from session_buddy.client.spool import PENDING, Spool

    spool = Spool(path, max_pending=100_000)
    try:
        return [
            {"id": item.id, "destination": item.destination, "reason": item.reason}
            | (item.record() or {"body": item.body})
            for item in spool.listing(states or (PENDING,))
        ]
    finally:
        spool.close()
