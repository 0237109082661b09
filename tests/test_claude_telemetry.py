"""Real Claude Code's own OpenTelemetry export (logs and metrics, `http/json` and
`http/protobuf`) into a real server, against the stand-in Messages API: each session's
tokens and cost are the sums of the `api_request` records Claude Code sent for it.

A recording proxy between Claude Code and the server keeps every request as sent, so the
sums are taken from what Claude Code said, not from what the server made of it.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from claude_standin import claude_binary, claude_environment, claude_home, stand_in_api
from mcp_helpers import http_server, mint_token, server_env

CLAUDE = claude_binary()
pytestmark = pytest.mark.skipif(
    CLAUDE is None, reason="Claude Code is not installed here (`make claude` installs it)"
)
SESSION_BUDDY = str(Path(sys.executable).with_name("session-buddy"))
API_KEY = "sk-ant-stand-in-0123456789abcdefghij"
SECRET = "t" * 40


class Recorder:
    """Forwards OTLP requests to the server and keeps (path, content type, body, status)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.sent: list[tuple[str, str, bytes, int]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _forwarding(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def api_requests(self) -> dict[str, dict[str, float]]:
        """Per Claude session id: the count and sums of the api_request records sent."""
        sums: dict[str, dict[str, float]] = {}
        with self.lock:
            sent = list(self.sent)
        for path, content_type, body, _ in sent:
            if path != "/v1/logs":
                continue
            if "protobuf" in content_type:
                document = MessageToDict(ExportLogsServiceRequest.FromString(body))
            else:
                document = json.loads(body)
            for resource in document.get("resourceLogs", []):
                for scope in resource.get("scopeLogs", []):
                    for record in scope.get("logRecords", []):
                        values = {
                            a["key"]: next(iter(a["value"].values()), None)
                            for a in record.get("attributes", [])
                        }
                        if values.get("event.name") != "api_request":
                            continue
                        into = sums.setdefault(str(values["session.id"]), {"requests": 0})
                        into["requests"] += 1
                        for name in (
                            "cost_usd",
                            "input_tokens",
                            "output_tokens",
                            "cache_read_tokens",
                            "cache_creation_tokens",
                        ):
                            into[name] = into.get(name, 0) + float(values.get(name) or 0)
        return sums

    def statuses(self) -> set[int]:
        with self.lock:
            return {status for *_, status in self.sent}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _forwarding(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body

        def do_POST(self) -> None:
            body = self._body()
            host, port = recorder.target.removeprefix("http://").split(":")
            upstream = http.client.HTTPConnection(host, int(port), timeout=30)
            forwarded = {
                name: value
                for name, value in self.headers.items()
                if name.lower() in ("content-type", "content-encoding", "authorization")
            }
            upstream.request("POST", self.path, body=body, headers=forwarded)
            answer = upstream.getresponse()
            reply = answer.read()
            content_type = self.headers.get("Content-Type", "")
            with recorder.lock:
                recorder.sent.append((self.path, content_type, body, answer.status))
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.getheader("Content-Type") or "")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            upstream.close()

    return Handler


class Home:
    def __init__(self, root: Path, api: Any) -> None:
        self.home, self.project = root / "home", root / "project"
        self.project.mkdir()
        claude_home(self.home, self.project, API_KEY)
        self.env = claude_environment(self.home, api, API_KEY)
        self.url = f"sqlite:///{root / 'server.db'}"

    def session_buddy(self, *args: str, **env: str) -> str:
        done = subprocess.run(
            [SESSION_BUDDY, *args],
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def claude(self, prompt: str, telemetry: dict[str, str]) -> None:
        done = subprocess.run(
            [str(CLAUDE), "-p", prompt, "--allowedTools", "Bash"],
            env=self.env | telemetry,
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def sessions(self, base: str, token: str | None = None) -> list[dict[str, Any]]:
        given = ("--token", token) if token else ()
        listed = self.session_buddy("sessions", "list", "--json", "--server-url", base, *given)
        return list(json.loads(listed)["sessions"])


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    with stand_in_api() as api:
        yield Home(tmp_path, api)


def telemetry(endpoint: str, protocol: str, **extra: str) -> dict[str, str]:
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_LOGS_EXPORT_INTERVAL": "500",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        **extra,
    }


def assert_usage_is_the_sum_of(session: dict[str, Any], sent: dict[str, float]) -> None:
    usage = session["usage"]
    assert usage is not None, session
    assert usage["api_requests"] == sent["requests"]
    assert usage["cost_usd"] == pytest.approx(sent["cost_usd"])
    for kind in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
        assert usage[kind] == sent[kind], kind


def wait_for(what: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_each_sessions_tokens_and_cost_are_what_claude_sent(home: Home, protocol: str) -> None:
    with http_server(home.url) as (base, _):
        recorder = Recorder(base)
        try:
            home.session_buddy("claude-code", "install", "--server-url", f"{base}/mcp")
            home.claude("[[bash:echo hi]]", telemetry(recorder.url, protocol))
            home.claude("Say hi", telemetry(recorder.url, protocol))
            sent = wait_for(lambda: len(recorder.api_requests()) == 2 and recorder.api_requests())
            sessions = wait_for(
                lambda: (
                    [s for s in home.sessions(base) if s["usage"] and s["status"] == "ended"]
                    if len(home.sessions(base)) == 2
                    else None
                )
            )
            by_claude = {s["external_id"]: s for s in home.sessions(base)}
            assert recorder.statuses() == {200}
        finally:
            recorder.close()
    assert len(sessions) == 2 and set(by_claude) == set(sent)
    for claude_session, sums in sent.items():
        assert_usage_is_the_sum_of(by_claude[claude_session], sums)
    assert sent[next(iter(sent))]["requests"] >= 1
    with_tool = [s for s in by_claude.values() if s["usage"]["tool_calls"]]
    assert len(with_tool) == 1 and with_tool[0]["usage"]["prompts"] == 1


def test_records_sent_before_the_start_attach_to_it(home: Home) -> None:
    """Claude Code reports with no hooks in place; its SessionStart comes afterwards (a
    hook spooled while the server was away, say): the usage waited for it."""
    with http_server(home.url) as (base, _):
        recorder = Recorder(base)
        try:
            home.claude("Say hi", telemetry(recorder.url, "http/protobuf"))
            sent = wait_for(recorder.api_requests)
            assert home.sessions(base) == []
            [(claude_session, sums)] = sent.items()
            start = {"session_id": claude_session, "hook_event_name": "SessionStart"}
            start |= {"cwd": str(home.project), "source": "startup"}
            subprocess.run(
                [SESSION_BUDDY, "hook", "claude-code"],
                input=json.dumps(start),
                env=server_env(home.url, SESSION_BUDDY_SERVER_URL=f"{base}/mcp"),
                check=True,
                text=True,
                timeout=30,
            )
            [session] = home.sessions(base)
        finally:
            recorder.close()
    assert session["external_id"] == claude_session
    assert_usage_is_the_sum_of(session, sums)


def test_a_token_without_write_scope_is_refused(home: Home) -> None:
    reader = mint_token(home.url, SECRET, "sessions:read")
    with http_server(home.url, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        recorder = Recorder(base)
        try:
            headers = {"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {reader}"}
            home.claude("Say hi", telemetry(recorder.url, "http/json", **headers))
            wait_for(recorder.api_requests)
            assert recorder.statuses() == {403}
            writer = mint_token(home.url, SECRET, "sessions:write")
            [(claude_session, _)] = recorder.api_requests().items()
            start = {"session_id": claude_session, "hook_event_name": "SessionStart"}
            subprocess.run(
                [SESSION_BUDDY, "hook", "claude-code"],
                input=json.dumps(start | {"cwd": "/tmp", "source": "startup"}),
                env=server_env(
                    home.url,
                    SESSION_BUDDY_SERVER_URL=f"{base}/mcp",
                    SESSION_BUDDY_TOKEN=writer,
                ),
                check=True,
                text=True,
                timeout=30,
            )
            [session] = home.sessions(base, reader)
        finally:
            recorder.close()
    assert session["usage"] is None  # nothing the read token sent was kept


def test_install_telemetry_needs_nothing_in_claudes_environment(home: Home) -> None:
    """`claude-code install --telemetry`: the settings point Claude Code's telemetry at
    the server; the token reaches it through the headers helper, never the file."""
    writer = mint_token(home.url, SECRET, "sessions:write")
    reader = mint_token(home.url, SECRET, "sessions:read")
    settings = home.home / ".claude" / "settings.json"
    with http_server(home.url, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        said = home.session_buddy(
            "claude-code",
            "install",
            "--server-url",
            f"{base}/mcp",
            "--telemetry",
            "--token",
            writer,
        )
        assert "telemetry" in said and writer not in settings.read_text()
        home.claude("[[bash:echo hi]]", {})
        [session] = wait_for(lambda: [s for s in home.sessions(base, reader) if s["usage"]])
        home.session_buddy("claude-code", "uninstall")
    assert session["usage"]["api_requests"] >= 2 and session["usage"]["tool_calls"] == 1
    assert session["usage"]["cost_usd"] > 0
    left = json.loads(settings.read_text())
    assert "otelHeadersHelper" not in left and "OTEL_EXPORTER_OTLP_ENDPOINT" not in left.get(
        "env", {}
    )
