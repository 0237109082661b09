"""OTLP export requests as Claude Code sends them, for tests: JSON documents and their
protobuf form (through opentelemetry-proto), and a plain HTTP poster."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

SECOND_NS = 1_000_000_000


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in values.items()]


def log_record(event: str, time_ns: int, **values: Any) -> dict[str, Any]:
    """A Claude Code event record (`api_request`, `tool_result`, ...); `session.id` among
    the values names its session."""
    return {
        "timeUnixNano": str(time_ns),
        "observedTimeUnixNano": str(time_ns),
        "body": {"stringValue": f"claude_code.{event}"},
        "attributes": attributes({"event.name": event, **values}),
    }


def logs(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    resource = {"attributes": attributes({"service.name": "claude-code"})}
    scope = {"scope": {"name": "com.anthropic.claude_code.events"}, "logRecords": list(records)}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [scope]}]}


def active_time(
    session: str, seconds: float, time_ns: int, *, cumulative: bool = False, start_ns: int = 0
) -> dict[str, Any]:
    point = {
        "attributes": attributes({"session.id": session, "type": "cli"}),
        "startTimeUnixNano": str(start_ns or time_ns - SECOND_NS),
        "timeUnixNano": str(time_ns),
        "asDouble": seconds,
    }
    metric = {
        "name": "claude_code.active_time.total",
        "unit": "s",
        "sum": {
            "dataPoints": [point],
            "aggregationTemporality": 2 if cumulative else 1,
            "isMonotonic": True,
        },
    }
    scope = {"scope": {"name": "com.anthropic.claude_code"}, "metrics": [metric]}
    return {"resourceMetrics": [{"resource": {"attributes": []}, "scopeMetrics": [scope]}]}


def protobuf(document: dict[str, Any]) -> bytes:
    """The same request in protobuf."""
    message = (
        ExportLogsServiceRequest() if "resourceLogs" in document else ExportMetricsServiceRequest()
    )
    return bytes(ParseDict(document, message).SerializeToString())


def post(
    base: str,
    path: str,
    body: bytes | Iterable[bytes],
    content_type: str = "application/json",
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    """POST `body` (an iterable of chunks: sent chunked); (status, headers, body)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        chunked = not isinstance(body, bytes)
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": content_type, **headers},
            encode_chunked=chunked,
        )
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def post_json(base: str, path: str, document: dict[str, Any], **headers: str) -> Any:
    status, _, body = post(base, path, json.dumps(document).encode(), **headers)
    return status, json.loads(body) if body else None
