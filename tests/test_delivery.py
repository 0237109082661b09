"""Client delivery under real faults: every event reaches its own destination exactly
once after the fault clears, or is listed as rejected with its reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from conftest import postgres_schema
from mcp_helpers import free_port, http_server, server_env, spooled
from session_buddy.client.spool import Destination, Spool
from session_buddy.core import SessionLifecycleManager

SECRET = "delivery-test-secret-0123456789abcdefghijklmnop"


def env_for(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    return server_env(database_url, SESSION_BUDDY_SPOOL=str(tmp_path / "spool.db"), **extra)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "session_buddy", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def sessions_in(database_url: str, **filters: Any) -> list[dict[str, Any]]:
    async with SessionLifecycleManager(database_url) as manager:
        page = await manager.list_sessions(limit=500, **filters)
    return list(page["sessions"])


async def end_events_applied(database_url: str) -> dict[str, int]:
    """How many ends changed each session (ended or crashed outcome in the event log)."""
    async with SessionLifecycleManager(database_url) as manager:
        rows = await manager.store.read(
            lambda tx: tx.all(
                "SELECT session_id, COUNT(*) AS n FROM events WHERE event_type = 'session_end' "
                "AND outcome IN ('ended', 'crashed') GROUP BY session_id"
            )
        )
    return {str(row["session_id"]): int(row["n"]) for row in rows}


def emit_pair(env: dict[str, str], component: str, url: str) -> tuple[str, str]:
    """`emit start` then `emit end` as a shell script does; what each printed."""
    started = run(env, "emit", "start", "--component", component, "--server-url", url)
    sid = started.stdout.strip()
    ended = run(env, "emit", "end", "--session-id", sid, "--server-url", url)
    return sid, ended.stdout.strip()


async def test_a_store_failure_is_kept_and_delivered_once_the_store_recovers(
    tmp_path: Path,
) -> None:
    with postgres_schema() as database_url, http_server(database_url) as (base, _):
        url = f"{base}/mcp"
        env = env_for(tmp_path, database_url)
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("ALTER TABLE sessions RENAME TO sessions_away")
            try:
                sid, ended = emit_pair(env, "pgdown", url)
                assert sid.startswith("spooled:") and ended == "spooled"
                waiting = spooled(tmp_path / "spool.db")
                assert [r["kind"] for r in waiting] == ["start", "end"]
                assert "store unavailable, retry later" in str(waiting[0]["reason"])
                assert "sessions" not in str(waiting[0]["reason"])  # no SQL reaches clients
            finally:
                connection.execute("ALTER TABLE sessions_away RENAME TO sessions")
        flushed = run(env, "spool", "flush")
        assert flushed.returncode == 0, flushed.stderr
        assert "delivered 2" in flushed.stdout
        [session] = await sessions_in(database_url, component_name="pgdown")
        assert session["status"] == "ended"
        assert spooled(tmp_path / "spool.db") == []


class Latin1BadGateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))  # as a proxy would
        body = "<html><body>Passerelle défaillante, réessayez</body></html>".encode("latin-1")
        self.send_response(502)
        self.send_header("Content-Type", "text/html; charset=iso-8859-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def bad_gateway(port: int) -> Iterator[None]:
    proxy = ThreadingHTTPServer(("127.0.0.1", port), Latin1BadGateway)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        proxy.shutdown()
        proxy.server_close()


async def test_a_proxy_error_page_is_transient(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'behind-proxy.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = env_for(tmp_path, database_url)
    with bad_gateway(port):
        sid, ended = emit_pair(env, "proxied", url)
    assert sid.startswith("spooled:") and ended == "spooled"
    [start, end] = spooled(tmp_path / "spool.db")
    assert "HTTP 502" in str(start["reason"]) and end["kind"] == "end"
    with http_server(database_url, port=port):
        assert run(env, "spool", "flush").returncode == 0
        assert run(env, "spool", "flush").stdout == "nothing waiting in the spool\n"
    [session] = await sessions_in(database_url, component_name="proxied")
    assert session["status"] == "ended"


async def test_each_destination_gets_only_its_own_events(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    db_a, db_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    url_a, url_b = f"http://127.0.0.1:{port_a}/mcp", f"http://127.0.0.1:{port_b}/mcp"
    blocked = tmp_path / "not-yet-mounted"
    blocked.write_text("a file where the store's folder belongs")
    local = f"sqlite:///{blocked / 'local.db'}"
    env = env_for(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")
    for component, url in (("alpha", url_a), ("beta", url_b)):
        assert emit_pair(env, component, url)[1] == "spooled"
    started = run(env, "emit", "start", "--component", "gamma", "--database-url", local)
    assert started.stdout.startswith("spooled:"), started.stderr
    run(env, "emit", "end", "--session-id", started.stdout.strip(), "--database-url", local)
    assert {r["destination"] for r in spooled(tmp_path / "spool.db")} == {url_a, url_b, local}
    summary = run(env | {"COLUMNS": "200"}, "spool", "list").stdout
    ids = {record["destination"]: [] for record in spooled(tmp_path / "spool.db")}
    for record in spooled(tmp_path / "spool.db"):
        ids[record["destination"]].append(record["id"])
    for url in (url_a, url_b, local):
        [row] = [line for line in summary.splitlines() if url in line]
        assert " 2 " in row  # a start and an end wait for each destination
        first, second = sorted(ids[url])
        assert f" {first}-{second} " in row  # the ids `spool drop` takes

    with http_server(db_a, port=port_a):
        only_a = run(env, "spool", "flush", "--server-url", url_a)
        assert only_a.returncode == 0, only_a.stderr
    assert {r["destination"] for r in spooled(tmp_path / "spool.db")} == {url_b, local}
    with http_server(db_b, port=port_b):
        rest = run(env, "spool", "flush")  # every destination; the local store still fails
    assert rest.returncode != 0 and local in rest.stderr
    assert {r["destination"] for r in spooled(tmp_path / "spool.db")} == {local}
    blocked.unlink()
    blocked.mkdir()  # the fault clears
    assert run(env, "spool", "flush").returncode == 0
    assert run(env, "spool", "list").stdout == "nothing waiting in the spool\n"  # no table
    assert spooled(tmp_path / "spool.db") == []
    for database, component in ((db_a, "alpha"), (db_b, "beta"), (local, "gamma")):
        found = await sessions_in(database)
        assert [(s["component_name"], s["status"]) for s in found] == [(component, "ended")]


async def test_an_old_spool_file_with_torn_and_foreign_lines(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'legacy.db'}"
    env = env_for(tmp_path, database_url)
    down = f"http://127.0.0.1:{free_port()}/mcp"
    run(env, "emit", "start", "--component", "legacy", "--server-url", down)  # make records
    [record] = spooled(tmp_path / "spool.db")
    (tmp_path / "spool.db").unlink()
    good_start = {"kind": "start", "event": record["event"]}
    good_end = {
        "kind": "end",
        "session_id": None,
        "start_event_id": record["event"]["event_id"],
        "start": record["event"],
        "event": {"timestamp": record["event"]["timestamp"], "metadata": {"exit_code": 0}},
    }
    (tmp_path / "spool.jsonl").write_text(
        "\n".join(
            [
                json.dumps(good_start),
                '{"kind": "start", "event": {"event_id"',  # torn
                json.dumps({"kind": "start"}),  # foreign: JSON, not a record
                json.dumps(good_end),
                "",
            ]
        )
    )
    with http_server(database_url) as (base, _):
        flushed = run(env, "spool", "flush", "--server-url", f"{base}/mcp")
    assert flushed.returncode == 0, flushed.stderr
    assert "2 record(s) of the old spool.jsonl" in flushed.stderr
    rejected = json.loads(run(env, "spool", "list", "--rejected", "--json").stdout)
    assert [r["state"] for r in rejected] == ["quarantined", "quarantined"]
    assert rejected[0]["record"] == '{"kind": "start", "event": {"event_id"'
    [session] = await sessions_in(database_url, component_name="legacy")
    assert session["status"] == "ended"


async def test_a_flush_killed_halfway_delivers_everything_once(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'killed.db'}"
    env = env_for(tmp_path, database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    down = run(env, "emit", "start", "--component", "template", "--server-url", url)
    [template] = spooled(tmp_path / "spool.db")
    spool = Spool(tmp_path / "spool.db", max_pending=100_000)
    spool.drop(template["id"])
    for n in range(150):
        event = dict(template["event"], event_id=f"00000000-0000-4000-8000-{n:012d}")
        event["component_name"] = "killed"
        event["pid"] = 10_000 + n
        spool.enqueue(Destination(url), {"kind": "start", "event": event})
        end = {"timestamp": event["timestamp"], "metadata": {"exit_code": 0}}
        spool.enqueue(
            Destination(url),
            {"kind": "end", "session_id": None, "start_event_id": event["event_id"], "event": end},
        )
    spool.close()
    assert down.stdout.startswith("spooled:")
    with http_server(database_url, port=port):
        flusher = subprocess.Popen(
            [sys.executable, "-m", "session_buddy", "spool", "flush"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while len(spooled(tmp_path / "spool.db")) > 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        flusher.send_signal(signal.SIGKILL)
        flusher.wait()
        left = len(spooled(tmp_path / "spool.db"))
        assert 0 < left < 300
        again = run(env, "spool", "flush")
        assert again.returncode == 0, again.stderr
    found = await sessions_in(database_url, component_name="killed")
    assert len(found) == 150 and {s["status"] for s in found} == {"ended"}
    assert set((await end_events_applied(database_url)).values()) == {1}
    assert spooled(tmp_path / "spool.db") == []


async def test_twenty_shells_spool_while_a_flush_runs(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'busy.db'}"
    env = env_for(tmp_path, database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    for n in range(40):
        assert emit_pair(env, f"backlog{n}", url)[1] == "spooled"
    emit = f"{sys.executable} -m session_buddy emit"
    script = (
        f"SID=$({emit} start --component shell$0 --server-url {url})"
        f' && {emit} end --session-id "$SID" --server-url {url}'
    )
    with http_server(database_url, port=port):
        flusher = subprocess.Popen(
            [sys.executable, "-m", "session_buddy", "spool", "flush"], env=env
        )
        shells = [
            subprocess.Popen(["sh", "-c", script, str(n)], env=env, stdout=subprocess.DEVNULL)
            for n in range(20)
        ]
        for shell in shells:
            assert shell.wait(timeout=60) == 0
        flusher.wait(timeout=60)
        final = run(env, "spool", "flush")
        assert final.returncode == 0, final.stderr
    found = await sessions_in(database_url)
    assert len(found) == 60 and {s["status"] for s in found} == {"ended"}
    assert len({s["component_name"] for s in found}) == 60
    assert set((await end_events_applied(database_url)).values()) == {1}
    assert spooled(tmp_path / "spool.db") == []


def test_an_unwritable_spool_never_stops_a_direct_delivery(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the spool's folder cannot be made here")
    database_url = f"sqlite:///{tmp_path / 'direct.db'}"
    env = server_env(database_url, SESSION_BUDDY_SPOOL=str(blocker / "spool.db"))
    with http_server(database_url) as (base, _):
        up = run(env, "emit", "start", "--component", "direct", "--server-url", f"{base}/mcp")
    assert up.returncode == 0 and up.stdout.startswith("direct-"), up.stderr
    down = f"http://127.0.0.1:{free_port()}/mcp"
    lost = run(env, "emit", "start", "--component", "direct", "--server-url", down)
    assert lost.returncode != 0
    assert "cannot use the spool" in lost.stderr and "Traceback" not in lost.stderr
    hook = subprocess.run(
        [sys.executable, "-m", "session_buddy", "hook", "claude-code", "--server-url", down],
        input=json.dumps({"hook_event_name": "SessionStart", "session_id": "c-1", "cwd": "/"}),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert hook.returncode == 0 and "cannot use the spool" in hook.stderr


async def test_bad_tokens_are_loud_and_their_events_kept_until_fixed(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'guarded.db'}"
    env = env_for(tmp_path, database_url, SESSION_BUDDY_SECRET=SECRET)

    def token(scope: str) -> str:
        return run(env, "token", "create", "--scope", scope).stdout.strip().splitlines()[-1]

    with http_server(database_url, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        url = f"{base}/mcp"
        for bad, said in ((token("sessions:read"), "lacks scope"), ("garbage", "invalid")):
            refused = run(
                env, "emit", "start", "--component", "guarded", "--server-url", url, "--token", bad
            )
            assert refused.returncode != 0
            assert refused.stdout.startswith("spooled:")
            assert "credentials refused" in refused.stderr and said in refused.stderr
        assert [r["kind"] for r in spooled(tmp_path / "spool.db")] == ["start", "start"]
        still = run(env, "spool", "flush", "--token", "garbage")
        assert still.returncode != 0 and "credentials refused" in still.stderr
        fixed = run(env, "spool", "flush", "--token", token("sessions:write"))
        assert fixed.returncode == 0, fixed.stderr
    found = await sessions_in(database_url, component_name="guarded")
    assert len(found) == 2
    assert spooled(tmp_path / "spool.db") == []


async def test_a_refused_event_is_listed_with_its_reason_and_can_be_dropped(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'refusing.db'}"
    env = env_for(tmp_path, database_url)
    with http_server(database_url) as (base, _):
        url = f"{base}/mcp"
        unknown = run(
            env, "emit", "end", "--session-id", "nobody-20260101-000000", "--server-url", url
        )
    assert unknown.returncode != 0 and "no session nobody-20260101-000000" in unknown.stderr
    [rejected] = json.loads(run(env, "spool", "list", "--rejected", "--json").stdout)
    assert (rejected["state"], rejected["destination"]) == ("rejected", url)
    assert rejected["reason"] == "no session nobody-20260101-000000"
    assert json.loads(run(env, "spool", "list", "--json").stdout) == []  # never retried
    assert run(env, "spool", "drop", str(rejected["id"])).returncode == 0
    assert json.loads(run(env, "spool", "list", "--rejected", "--json").stdout) == []
