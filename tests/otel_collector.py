"""A test OpenTelemetry collector: an OTLP/HTTP logs receiver on 127.0.0.1 that decodes
what it is sent with `opentelemetry-proto` and keeps each log record as a plain dict."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Collector:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, body: bytes, headers: dict[str, str]) -> None:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        with self.arrived:
            self.headers.append(headers)
            for resource_logs in request.resource_logs:
                resource = {a.key: _value(a.value) for a in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        self.records.append(
                            {
                                "event_name": record.event_name,
                                "severity": record.severity_text,
                                "time_unix_nano": record.time_unix_nano,
                                "body": _value(record.body),
                                "attributes": {a.key: _value(a.value) for a in record.attributes},
                                "resource": resource,
                                "scope": scope_logs.scope.name,
                            }
                        )
            self.arrived.notify_all()

    def wait_until(
        self, done: Callable[[list[dict[str, Any]]], bool], seconds: float = 20
    ) -> list[dict[str, Any]]:
        """The records received once `done` says they are all (or `seconds` passed)."""
        with self.arrived:
            self.arrived.wait_for(lambda: done(self.records), seconds)
            return list(self.records)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            collector.take(body, dict(self.headers))
            answer = ExportLogsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


@contextmanager
def collector() -> Iterator[Collector]:
    running = Collector()
    try:
        yield running
    finally:
        running.close()
