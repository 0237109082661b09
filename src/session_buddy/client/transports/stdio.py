"""MCP over the stdin/stdout of a `session-buddy serve` child process."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from typing import Any

from session_buddy.client.transports.base import DEFAULT_TIMEOUT, TransportError
from session_buddy.client.transports.jsonrpc import (
    INITIALIZED,
    initialize_params,
    request,
    tool_result,
)

STDIO_STARTUP_TIMEOUT = 5.0


class StdioTransport:
    """MCP over the stdin/stdout of a `session-buddy serve` child process."""

    def __init__(self, command: list[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._next_id = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise TransportError(f"cannot start {self.command[0]}: {exc}") from exc
        self._buffer = b""
        self._exchange("initialize", initialize_params(), STDIO_STARTUP_TIMEOUT)
        self._send(INITIALIZED)
        return self._process

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message).encode() + b"\n")
            self._process.stdin.flush()
        except OSError as exc:
            raise TransportError(f"the stdio server went away: {exc}") from exc

    def _exchange(self, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        self._send(request(request_id, method, params))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == request_id:
                return reply

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TransportError("the stdio server did not answer in time")
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise TransportError("the stdio server exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise TransportError(f"the stdio server wrote non-JSON: {line[:80]!r}") from exc
        return message if isinstance(message, dict) else {}

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self._start()
        params = {"name": tool, "arguments": arguments}
        return tool_result(self._exchange("tools/call", params, self.timeout))

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()  # the server sees EOF and closes its store
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.terminate()


def default_stdio_command() -> list[str]:
    return [sys.executable, "-m", "session_buddy", "serve"]
