"""Real Claude Code for tests: a stand-in for Anthropic's Messages API that Claude Code
talks to (`ANTHROPIC_BASE_URL`), and the home folder and environment it runs in.

The stand-in answers by what the conversation asks, so that Claude Code's own extra
requests get an answer too. A user message holding

- `[[bash:COMMAND]]` is answered with a Bash tool call running COMMAND;
- `[[agent:PROMPT]]` with an Agent tool call: a subagent whose own conversation is PROMPT;
- `[[rate-limit]]` with HTTP 429 (rate_limit_error);
- `[[hold]]` is answered (or, beside a tool call, the tool's result is) only once the
  test calls `release()`;

after a tool result it answers "Done.", and anything else with "Hi!". Replies stream as
server-sent events when Claude Code asks for a stream, as it does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"\[\[(bash|agent|rate-limit|hold)(?::([^\]]*))?\]\]")


def claude_binary() -> str | None:
    """Claude Code's command: $SESSION_BUDDY_TEST_CLAUDE, else the one `make claude`
    installs, else one on PATH."""
    given = os.environ.get("SESSION_BUDDY_TEST_CLAUDE")
    installed = REPO / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
    for candidate in (given, str(installed) if installed.exists() else None):
        if candidate:
            return candidate
    return shutil.which("claude")


class StandIn:
    """The Messages API on 127.0.0.1, in a thread; `requests` holds what Claude asked."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.held = threading.Event()  # a [[hold]] request arrived
        self._release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        self.held.set()
        self._release.wait(60)

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def reply(self, request: dict[str, Any]) -> tuple[int, list[dict[str, Any]], str]:
        """(HTTP status, content blocks, stop reason) for one request."""
        messages = request.get("messages") or []
        said = _user_text(messages)
        if _has_tool_result(messages[-1] if messages else {}):
            if "[[hold]]" in said:
                self._hold()
            return 200, [_text("Done.")], "end_turn"
        found = MARKER.search(said)
        kind, argument = (found.group(1), found.group(2) or "") if found else ("", "")
        if kind == "hold":
            self._hold()
        if kind == "rate-limit":
            return 429, [], ""
        if kind == "bash":
            return 200, [_tool("Bash", {"command": argument, "description": "Run it"})], "tool_use"
        if kind == "agent":
            task = {"description": "A task", "prompt": argument, "subagent_type": "general-purpose"}
            return 200, [_tool("Agent", task)], "tool_use"
        return 200, [_text("Hi!")], "end_turn"


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{uuid.uuid4().hex[:20]}",
        "name": name,
        "input": arguments,
    }


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else content or []


def _has_tool_result(message: dict[str, Any]) -> bool:
    blocks = _blocks(message) if message.get("role") == "user" else []
    return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)


def _user_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(
        str(block.get("text", ""))
        for message in messages
        if message.get("role") == "user"
        for block in _blocks(message)
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._json(200, {})

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                request = {}
            if "count_tokens" in self.path:
                self._json(200, {"input_tokens": 10})
                return
            stand_in.requests.append(request)
            status, blocks, stop = stand_in.reply(request)
            if status != 200:
                error = {"type": "rate_limit_error", "message": "Number of requests exceeded"}
                self._json(status, {"type": "error", "error": error})
                return
            message = {
                "id": f"msg_{uuid.uuid4().hex[:20]}",
                "type": "message",
                "role": "assistant",
                "model": request.get("model", "claude-stand-in"),
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
            if request.get("stream"):
                self._stream(message, blocks, stop)
            else:
                self._json(200, message | {"content": blocks, "stop_reason": stop})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, message: dict[str, Any], blocks: list[dict[str, Any]], stop: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            started = message | {"content": [], "stop_reason": None}
            events: list[dict[str, Any]] = [{"type": "message_start", "message": started}]
            for index, block in enumerate(blocks):
                if block["type"] == "text":
                    empty, delta = _text(""), {"type": "text_delta", "text": block["text"]}
                else:
                    empty = block | {"input": {}}
                    delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
                events += [
                    {"type": "content_block_start", "index": index, "content_block": empty},
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    {"type": "content_block_stop", "index": index},
                ]
            events += [
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
                {"type": "message_stop"},
            ]
            for event in events:
                self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            self.close_connection = True

    return Handler


def claude_home(home: Path, trusted: Path, api_key: str) -> None:
    """A home where Claude Code starts without its first-run questions: onboarding done,
    `trusted` a trusted folder, the API key approved."""
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
        "projects": {str(trusted): {"hasTrustDialogAccepted": True, "allowedTools": []}},
    }
    (home / ".claude.json").write_text(json.dumps(state))


def claude_environment(home: Path, stand_in: StandIn, api_key: str) -> dict[str, str]:
    """Claude Code's environment: this home, the stand-in API, no other traffic, and
    none of session-buddy's own settings (the hooks must not need them)."""
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "XDG_RUNTIME_DIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return env | {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",  # no virtualenv: the hooks run by absolute path
        "ANTHROPIC_BASE_URL": stand_in.url,
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


@contextmanager
def stand_in_api() -> Iterator[StandIn]:
    api = StandIn()
    try:
        yield api
    finally:
        api.close()
