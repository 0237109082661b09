"""Alerts, end to end: rules added with the CLI, a real server (`serve --http`) raising
and delivering them, and real receivers (a JSON webhook, an SMTP server) reached through
Apprise URLs."""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import fill, postgres_schema, start_payload
from mcp_helpers import http_server, mint_token, run_cli
from receivers import Notice, SmtpReceiver, WebhookReceiver

# The server looks for conditions of time every second and reaps every half second.
FAST = {"SESSION_BUDDY_REAP_INTERVAL": "0.5"}


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Hooks:
    """Sessions driven through a server's Claude Code hook endpoint, as Claude Code does."""

    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, event: str, claude_id: str, **fields: Any) -> dict[str, Any]:
        payload = {"hook_event_name": event, "session_id": claude_id, "cwd": "/srv/app"}
        reply = httpx2.post(f"{self.base}/hooks/claude-code", json=payload | fields, timeout=10)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


def tool(base: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One MCP tool call over stateless JSON-RPC (as any HTTP client can)."""
    reply = httpx2.post(
        f"{base}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        },
        headers={"Accept": "application/json, text/event-stream"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["result"]["structuredContent"])


def start(base: str, component: str, **overrides: Any) -> str:
    payload = start_payload(component_name=component, timestamp=now_iso(), **overrides)
    result = tool(base, "track_session_start", payload)
    assert result["status"] == "tracked", result
    return str(result["session_id"])


def end(base: str, session_id: str, **metadata: Any) -> dict[str, Any]:
    return tool(
        base,
        "track_session_end",
        {"session_id": session_id, "timestamp": now_iso(), "metadata": metadata},
    )


def beat(base: str, session_id: str, activity: str, detail: str | None = None) -> None:
    arguments = {"session_id": session_id, "activity": activity}
    result = tool(
        base, "track_session_heartbeat", arguments | ({"detail": detail} if detail else {})
    )
    assert result["status"] == "recorded", result


def add_rule(url: str, name: str, *flags: str) -> None:
    run_cli(url, "alerts", "add", name, *flags)


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def keys(notices: list[Notice]) -> Counter[str | None]:
    return Counter(notice.key for notice in notices)


def settle(receiver: WebhookReceiver, seconds: float = 2.5) -> list[Notice]:
    """What the receiver has after nothing more is expected for `seconds`."""
    time.sleep(seconds)
    return list(receiver.notices)


def test_each_rule_fires_once_and_clears(sqlite_url: str, webhook: WebhookReceiver) -> None:
    hook = webhook.url()
    add_rule(
        sqlite_url,
        "waits",
        "--when",
        "waiting",
        "--for",
        "1",  # a bare number: seconds
        "--component",
        "cw",
        "--notify",
        hook,
        "--resolved",
    )
    add_rule(
        sqlite_url,
        "fails",
        "--when",
        "failing",
        "--component",
        "cf",
        "--notify",
        hook,
        "--resolved",
    )
    add_rule(sqlite_url, "crashes", "--when", "crashed", "--component", "cc", "--notify", hook)
    add_rule(
        sqlite_url,
        "left",
        "--when",
        "abandoned",
        "--component",
        "ca",
        "--notify",
        hook,
        "--resolved",
    )
    add_rule(
        sqlite_url,
        "silent",
        "--when",
        "stuck",
        "--for",
        "2s",
        "--component",
        "cs",
        "--notify",
        hook,
        "--resolved",
    )
    add_rule(
        sqlite_url,
        "rate",
        "--when",
        "crash-rate",
        "--below",
        "90",
        "--component",
        "cr",
        "--notify",
        hook,
        "--resolved",
    )
    with http_server(sqlite_url, "--stateless", **FAST) as (base, _):
        waiting = start(base, "cw")
        beat(base, waiting, "waiting_for_input")
        [fired] = webhook.wait_for(1)
        assert fired.title == f"session-buddy: {waiting} is waiting for input"
        assert (
            "waiting for input for 1 s" in fired.body or "waiting for input for 2 s" in fired.body
        )
        assert f"{base}/sessions/{waiting}" in fired.body
        assert "component: cw · host: server01 · user: john" in fired.body
        assert fired.key and fired.key.endswith("-firing") and f"key: {fired.key}" in fired.body
        beat(base, waiting, "working")
        webhook.wait_for(2)
        assert (
            webhook.notices[1].title == f"session-buddy: resolved: {waiting} is waiting for input"
        )

        failing = start(base, "cf")
        beat(base, failing, "failing", "rate_limit")
        beat(base, failing, "failing", "rate_limit")  # still failing: no second alert
        webhook.wait_for(3)
        assert "rate_limit" in webhook.notices[2].body
        beat(base, failing, "working")
        webhook.wait_for(4)
        assert webhook.notices[3].title == f"session-buddy: resolved: {failing} is failing"

        crashed = start(base, "cc")
        assert end(base, crashed, exit_code=3)["session_status"] == "crashed"
        end(base, crashed, exit_code=3)  # a second end changes nothing
        webhook.wait_for(5)
        assert webhook.notices[4].title == f"session-buddy: {crashed} crashed"
        assert "exit_code 3" in webhook.notices[4].body

        left = start(base, "ca", hostname=platform.node(), pid=dead_pid())
        webhook.wait_for(6)
        assert webhook.notices[5].title == f"session-buddy: {left} was abandoned"
        assert "process_gone (pid" in webhook.notices[5].body
        end(base, left)  # a late end: the session ended after all
        webhook.wait_for(7)
        assert webhook.notices[6].title == f"session-buddy: resolved: {left} was abandoned"

        stuck = start(base, "cs")
        beat(base, stuck, "working")
        webhook.wait_for(8, timeout=10)
        assert webhook.notices[7].title == f"session-buddy: {stuck} looks stuck"
        assert "working but silent for" in webhook.notices[7].body
        beat(base, stuck, "working")
        webhook.wait_for(9)
        assert webhook.notices[8].title == f"session-buddy: resolved: {stuck} looks stuck"

        for number in range(5):
            session = start(base, "cr")
            end(base, session, exit_code=int(number == 0))  # 1 of 5 crashed: 80 % crash-free
        webhook.wait_for(10)
        assert webhook.notices[9].title == "session-buddy: cr crashes too often"
        assert "crash-free 80.0% over the last hour (1 of 5" in webhook.notices[9].body
        for _ in range(5):
            end(base, start(base, "cr"))  # 9 of 10 crash-free: 90 %, not below 90
        webhook.wait_for(11)
        assert webhook.notices[10].title == "session-buddy: resolved: cr crashes too often"

        got = settle(webhook)
    assert len(got) == 11  # each fired once and cleared once, nothing more
    assert all(count == 1 for count in keys(got).values())


def outbox(url: str) -> list[dict[str, Any]]:
    """The outbox rows of a SQLite store, read as the CLI reads (alerts list --json)."""
    return json.loads(run_cli(url, "alerts", "list", "--json").stdout)


def test_a_receiver_down_for_a_while_gets_every_alert_afterwards(
    sqlite_url: str, webhook: WebhookReceiver
) -> None:
    add_rule(sqlite_url, "crashes", "--when", "crashed", "--notify", webhook.url())
    webhook.stop()
    with http_server(sqlite_url, "--stateless", **FAST) as (base, _):
        crashed = [start(base, "svc") for _ in range(3)]
        for session in crashed:
            end(base, session, exit_reason="exception: RuntimeError")
        time.sleep(3)  # attempts fail: connection refused
        [rule] = outbox(sqlite_url)
        assert rule["pending"] == 3  # a crash is told once: no alert stays open
        assert "Connection error" in rule["last_error"]
        webhook.start()
        got = webhook.wait_for(3, timeout=40)  # backoff: 1, 2, 4 ... s
        got = settle(webhook)
    assert sorted(notice.title for notice in got) == sorted(
        f"session-buddy: {session} crashed" for session in crashed
    )
    assert all(count == 1 for count in keys(got).values()) and len(keys(got)) == 3


def test_a_server_killed_before_delivery_delivers_after_restart(
    sqlite_url: str, webhook: WebhookReceiver
) -> None:
    add_rule(sqlite_url, "crashes", "--when", "crashed", "--notify", webhook.url())
    webhook.stop()
    with http_server(sqlite_url, "--stateless", **FAST) as (base, server):
        session = start(base, "svc")
        end(base, session, exit_code=1)  # the alert is in the store with the crash
        server.send_signal(signal.SIGKILL)
        server.wait()
    webhook.start()
    assert webhook.notices == []
    with http_server(sqlite_url, "--stateless", **FAST):
        [notice] = webhook.wait_for(1)
        assert notice.title == f"session-buddy: {session} crashed"
        assert settle(webhook) == [notice]


def test_two_servers_on_postgresql_deliver_each_alert_once(webhook: WebhookReceiver) -> None:
    with postgres_schema() as url:
        add_rule(url, "crashes", "--when", "crashed", "--notify", webhook.url())
        with (
            http_server(url, "--stateless", **FAST) as (first, _),
            http_server(url, "--stateless", **FAST) as (second, _),
        ):
            crashed = []
            for number in range(20):
                base = (first, second)[number % 2]
                session = start(base, "svc")
                end((second, first)[number % 2], session, exit_code=1)
                crashed.append(session)
            webhook.wait_for(20)
            got = settle(webhook, 4)
    assert sorted(notice.title for notice in got) == sorted(
        f"session-buddy: {session} crashed" for session in crashed
    )
    assert len(keys(got)) == 20


def test_email_through_a_real_smtp_server(sqlite_url: str) -> None:
    mail = SmtpReceiver().start()
    try:
        add_rule(sqlite_url, "mail", "--when", "crashed", "--notify", mail.url())
        with http_server(sqlite_url, "--stateless", **FAST) as (base, _):
            session = start(base, "svc")
            end(base, session, exit_reason="oom: killed at 4 GiB")
            [message] = mail.wait_for(1)
    finally:
        mail.stop()
    assert message.title == f"session-buddy: {session} crashed"
    assert "oom: killed at 4 GiB" in message.body
    assert "key: session-buddy-alert-" in message.body


def test_secrets_never_appear_in_logs_or_cli_output(
    sqlite_url: str, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    secrets = ("hunter2-password", "tok3n-in-path", "query-s3cret")
    channels = [
        f"json://user:{secrets[0]}@127.0.0.1:{webhook.port}/{secrets[1]}?x={secrets[2]}",
        SmtpReceiver().url(password=secrets[0]),  # nothing listens: it fails
    ]
    add = ("alerts", "add", "mixed", "--when", "crashed", "--notify", channels[0])
    said = [run_cli(sqlite_url, *add, "--notify", channels[1]).stdout]
    webhook.stop()
    log = tmp_path / "server.log"
    with http_server(
        sqlite_url, "--stateless", log=log, **FAST, SESSION_BUDDY_LOG_LEVEL="DEBUG"
    ) as (base, _):
        end(base, start(base, "svc"), exit_code=1)
        time.sleep(3)
        done = [
            run_cli(sqlite_url, *command, check=False)
            for command in (
                ("alerts", "list"),
                ("alerts", "list", "--json"),
                ("alerts", "test", "mixed"),
                ("alerts", "test", "mixed", "--json"),
            )
        ]
        said += [command.stdout + command.stderr for command in done]
        assert "FAILED: A Connection error occurred sending JSON notification" in said[3]
        said.append(run_cli(sqlite_url, *add, check=False).stderr)  # exists
    logged = log.read_text()
    assert "not delivered to json://***@127.0.0.1:" in logged  # the failures are logged ...
    for secret in secrets:  # ... and no secret anywhere
        assert secret not in logged
        assert not any(secret in text for text in said), said


def test_a_failing_store_raises_one_alert_not_thousands(
    small_disk: Path, webhook: WebhookReceiver
) -> None:
    url = f"sqlite:///{small_disk / 'sessions.db'}"
    add_rule(url, "crashes", "--when", "crashed", "--notify", webhook.url())
    with http_server(url, "--stateless", **FAST) as (base, _):
        start(base, "svc")
        filler = fill(small_disk)
        big = {"blob": "x" * 60_000}
        refused = [
            tool(base, "track_session_start", start_payload(timestamp=now_iso(), metadata=big))
            for _ in range(30)
        ]
        assert {result.get("error_code") for result in refused} == {"store_unavailable"}
        [failing] = webhook.wait_for(1)
        assert failing.title == "session-buddy: the session store is failing"
        assert len(settle(webhook)) == 1  # thirty failed writes, one notice
        filler.unlink()
        start(base, "svc")
        webhook.wait_for(2, timeout=20)  # well for 10 s
        assert webhook.notices[1].title == "session-buddy: the session store works again"


def test_refusals_name_the_flag(sqlite_url: str) -> None:
    def refused(*flags: str) -> str:
        done = run_cli(sqlite_url, "alerts", *flags, check=False)
        assert done.returncode != 0 and not done.stdout
        return done.stderr.strip().splitlines()[-1]

    hook = "json://127.0.0.1:9/x"
    assert "--for: applies to waiting and stuck only" in refused(
        "add", "a", "--when", "crashed", "--for", "5s", "--notify", hook
    )
    assert "--below: must be between 0 and 100" in refused(
        "add", "a", "--when", "crash-rate", "--below", "120", "--notify", hook
    )
    assert "--notify #2 (nope://*** #" in refused(
        "add", "a", "--when", "crashed", "--notify", hook, "--notify", "nope://secret-token"
    )
    assert "secret-token" not in refused(
        "add", "a", "--when", "crashed", "--notify", "nope://secret-token"
    )
    assert "--cwd: must be an absolute path" in refused(
        "add", "a", "--when", "crashed", "--cwd", "srv", "--notify", hook
    )
    assert "name: 1 to 64 letters" in refused(
        "add", "bad name", "--when", "crashed", "--notify", hook
    )
    assert "Missing option '--notify'" in refused("add", "a", "--when", "crashed")
    run_cli(sqlite_url, "alerts", "add", "a", "--when", "crashed", "--notify", hook)
    assert "exists: use --replace" in refused("add", "a", "--when", "failing", "--notify", hook)
    run_cli(sqlite_url, "alerts", "add", "a", "--when", "failing", "--notify", hook, "--replace")
    assert "no alert rule named b" in refused("remove", "b")
    assert run_cli(sqlite_url, "alerts", "remove", "a").stdout == "removed: a\n"
    assert run_cli(sqlite_url, "alerts", "list").stdout.startswith("no alert rules")


def test_rules_through_a_secured_server_need_the_admin_scope(sqlite_url: str) -> None:
    secret = "s" * 32
    reader = mint_token(sqlite_url, secret, "sessions:read")
    admin = mint_token(sqlite_url, secret, "sessions:read sessions:admin")
    hook = "json://127.0.0.1:9/secret-path"
    with http_server(sqlite_url, SESSION_BUDDY_SECRET=secret) as (base, _):
        remote = ("--server-url", f"{base}/mcp")
        add = ("alerts", "add", "r", "--when", "crashed", "--notify", hook, *remote)
        refused = run_cli(sqlite_url, *add, "--token", reader, check=False)
        assert refused.returncode == 1 and "sessions:admin" in refused.stderr
        assert run_cli(sqlite_url, *add, "--token", admin).stdout == "added: r\n"
        listed = run_cli(sqlite_url, "alerts", "list", "--json", *remote, "--token", reader)
        [rule] = json.loads(listed.stdout)
        assert rule["channels"][0].startswith("json://127.0.0.1:9/*** #")
        assert "secret-path" not in listed.stdout
