"""Tokens: minted by the CLI, required by the server when SESSION_BUDDY_SECRET is set."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from mcp import Client, StdioServerParameters

from conftest import start_payload
from mcp_helpers import http_client, http_server, server_env, structured
from session_buddy.app.auth import AUDIENCE, TokenAuthority

SECRET = "test-secret-with-enough-entropy-0123456789"
authority = TokenAuthority(SECRET)
WRITE = authority.create(["sessions:write"])
READ = authority.create(["sessions:read"])
BOTH = authority.create(["sessions:read", "sessions:write"])


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    base = {"aud": AUDIENCE, "exp": int(time.time()) + 600, "scope": "sessions:read sessions:write"}
    return jwt.encode(base | claims, secret, algorithm="HS256")


def unsigned() -> str:
    """A token with `alg: none` (no signature), which must never be accepted."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {"aud": AUDIENCE, "exp": int(time.time()) + 600, "scope": "sessions:write"}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS = {
    "expired": signed({"exp": int(time.time()) - 10}),
    "wrong audience": signed({"aud": "someone-else"}),
    "wrong signature": signed({}, secret="not-the-secret-at-all-0123456789abcdef"),
    "alg none": unsigned(),
    "garbage": "not.a.token",
}


def rpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": arguments})


MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-06-18",
}


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    database = tmp_path_factory.mktemp("auth") / "auth.db"
    with http_server(f"sqlite:///{database}", SESSION_BUDDY_SECRET=SECRET) as (base, _):
        yield base


def post(base: str, body: dict[str, Any], token: str | None = None) -> httpx2.Response:
    headers = MCP_HEADERS | ({"Authorization": f"Bearer {token}"} if token else {})
    return httpx2.post(f"{base}/mcp", json=body, headers=headers, timeout=10)


def test_tool_call_without_token_is_401(secured_server: str) -> None:
    response = post(secured_server, tool_call("list_sessions", {}))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_bearer_tokens_are_401(secured_server: str, kind: str) -> None:
    response = post(secured_server, tool_call("list_sessions", {}), token=BAD_TOKENS[kind])
    assert response.status_code == 401, kind
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_token_arguments_are_401(secured_server: str, kind: str) -> None:
    body = tool_call("track_session_start", start_payload() | {"token": BAD_TOKENS[kind]})
    assert post(secured_server, body).status_code == 401


def test_health_check_needs_no_token(secured_server: str) -> None:
    assert httpx2.get(f"{secured_server}/healthz").json()["status"] == "ok"


async def test_bearer_token_grants_access_and_scopes_are_enforced(secured_server: str) -> None:
    async with http_client(secured_server, token=BOTH) as client:
        started = structured(await client.call_tool("track_session_start", start_payload()))
        assert started["status"] == "tracked"
    async with http_client(secured_server, token=READ) as client:
        denied = structured(await client.call_tool("track_session_start", start_payload()))
        assert denied["status"] == "error" and "sessions:write" in denied["error"]
        page = structured(await client.call_tool("list_sessions", {}))
        assert page["status"] == "ok" and len(page["sessions"]) >= 1
    async with http_client(secured_server, token=WRITE) as client:
        denied = structured(await client.call_tool("list_sessions", {}))
        assert denied["status"] == "error" and "sessions:read" in denied["error"]
        health = structured(await client.call_tool("health_check", {}))
        assert health["status"] == "ok"


async def test_token_argument_works_without_a_header(secured_server: str) -> None:
    async with http_client(secured_server) as client:
        event = start_payload(component_name="argtoken")
        started = structured(
            await client.call_tool("track_session_start", event | {"token": WRITE})
        )
        assert started["status"] == "tracked"
        health = structured(await client.call_tool("health_check", {}))
        assert health["status"] == "ok"


async def test_stdio_requires_a_token_argument(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "session_buddy"],
        env=server_env(f"sqlite:///{tmp_path / 's.db'}", SESSION_BUDDY_SECRET=SECRET),
    )
    async with Client(params) as client:
        refused = structured(await client.call_tool("track_session_start", start_payload()))
        assert refused["status"] == "error" and refused["error"].startswith("unauthorized")
        for kind, token in BAD_TOKENS.items():
            arguments = start_payload() | {"token": token}
            bad = structured(await client.call_tool("track_session_start", arguments))
            assert bad["status"] == "error", kind
        wrong_scope = structured(
            await client.call_tool("get_session", {"session_id": "x", "token": WRITE})
        )
        assert wrong_scope["status"] == "error" and wrong_scope["error"].startswith("forbidden")
        ok = structured(
            await client.call_tool("track_session_start", start_payload() | {"token": WRITE})
        )
        assert ok["status"] == "tracked"


def cli(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = server_env("sqlite:////nonexistent/unused.db")
    if secret:
        env["SESSION_BUDDY_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "session_buddy", *args], env=env, capture_output=True, text=True
    )


def test_token_create_prints_a_verifiable_token_on_its_last_line() -> None:
    result = cli("token", "create", "--scope", "sessions:read sessions:write", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    claims = authority.verify(token)
    assert claims["scope"].split() == ["sessions:read", "sessions:write"]
    assert 100 <= claims["exp"] - time.time() <= 121


def test_token_create_explains_mistakes() -> None:
    no_secret = cli("token", "create", "--scope", "sessions:read", secret=None)
    assert no_secret.returncode != 0 and "SESSION_BUDDY_SECRET" in no_secret.stderr
    bad_scope = cli("token", "create", "--scope", "sessions:delete")
    assert bad_scope.returncode != 0 and "Invalid scope sessions:delete" in bad_scope.stderr


@pytest.mark.parametrize("transport", [["serve"], ["serve", "--http", "--port", "0"]])
def test_a_secret_shorter_than_32_bytes_is_refused_in_one_line(
    tmp_path: Path, transport: list[str]
) -> None:
    store = tmp_path / "weak.db"
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy", *transport],
        env=server_env(f"sqlite:///{store}", SESSION_BUDDY_SECRET="hunter2"),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "SESSION_BUDDY_SECRET is 7 bytes: use at least 32" in line
    assert not store.exists()


def test_the_start_up_line_names_the_dashboard_and_whether_auth_is_on(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with http_server(f"sqlite:///{tmp_path / 's.db'}", log=log, SESSION_BUDDY_SECRET=SECRET) as (
        base,
        _,
    ):
        pass
    said = log.read_text()
    assert f"serving MCP on {base}/mcp, the dashboard on {base}/, auth on" in said
