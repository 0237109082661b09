"""Real notification receivers for the alert tests: a JSON webhook (what Apprise's
json:// posts) and an SMTP server (aiosmtpd), both on loopback, both able to go down
and come back on the same port."""

from __future__ import annotations

import email
import json
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from mcp_helpers import free_port


class Notice(NamedTuple):
    title: str
    body: str
    key: str | None  # the Idempotency-Key header, where the channel has headers


class Receiver:
    """What a receiver got, in order, and a way to wait for it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.notices: list[Notice] = []
        self._changed = threading.Condition()

    def got(self, notice: Notice) -> None:
        with self._changed:
            self.notices.append(notice)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Notice]:
        """At least `count` notices, within `timeout` seconds (AssertionError if not)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.notices) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.notices)} of {count} notices: {self.notices}"
                self._changed.wait(left)
            return list(self.notices)

    def titled(self, text: str) -> list[Notice]:
        return [notice for notice in self.notices if text in notice.title]


class WebhookReceiver(Receiver):
    """A JSON webhook on 127.0.0.1; `url(path)` is its Apprise URL."""

    def __init__(self) -> None:
        super().__init__()
        self.server: ThreadingHTTPServer | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body: dict[str, Any] = json.loads(self.rfile.read(length))
                self.send_response(200)
                self.end_headers()
                receiver.got(
                    Notice(body["title"], body["message"], self.headers.get("Idempotency-Key"))
                )

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class SmtpReceiver(Receiver):
    """An SMTP server (aiosmtpd) on 127.0.0.1; `url()` is an Apprise mailto URL to it."""

    def __init__(self) -> None:
        super().__init__()
        self.controller: Controller | None = None

    def url(self, password: str = "not-a-real-password") -> str:
        return (
            f"mailto://alerts:{password}@127.0.0.1:{self.port}?from=sb@example.com"
            "&to=oncall@example.com&mode=insecure"
        )

    def start(self) -> SmtpReceiver:
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message: Message = email.message_from_bytes(envelope.content)
                text = next(
                    part.get_payload(decode=True).decode()
                    for part in message.walk()
                    if part.get_content_type() == "text/plain"
                )
                receiver.got(Notice(str(message["Subject"]), text, None))
                return "250 OK"

        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            auth_require_tls=False,
            authenticator=lambda *args: AuthResult(success=True),
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
