"""OTLP log and metric export requests, JSON or protobuf, read as usage per client
session (core/usage.py).

What counts is what Claude Code sends: log records `claude_code.api_request` (model,
tokens by kind, cost_usd, duration_ms), `api_error` (status_code, error),
`tool_result` (tool_name, success) and `user_prompt`, and the metric
`claude_code.active_time.total`; each carries `session.id`, the Claude session id that
the hooks store as `external_id`. A record without a usable `session.id` is rejected (the
exporter hears so as a partial success); other records and metrics are accepted and
left alone. Protobuf is decoded by `opentelemetry-proto`, loaded on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from session_buddy.core.errors import StoreUnavailable
from session_buddy.core.usage import TOKEN_KINDS, Growth, Usage

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from session_buddy.app.service import SessionService

SESSION_KEY = "session.id"
SESSION_KEY_MAX = 200
ACTIVE_TIME = "claude_code.active_time.total"
EVENT_PREFIX = "claude_code."
CUMULATIVE = 2  # AggregationTemporality: 1 delta, 2 cumulative
# Larger amounts than this in one record are taken for garbage, not usage (a session's
# sums then stay far from the 64-bit limit).
MOST = 10**12


class OtlpError(ValueError):
    """A body that is not an OTLP export request of its kind."""


class Decoded(NamedTuple):
    usages: dict[str, Usage]
    growths: list[Growth]
    accepted: int  # records (or data points) read
    rejected: int  # those without a usable session.id

    def problem(self, noun: str) -> str:
        """The partial-success message, or "" when nothing was rejected."""
        if not self.rejected:
            return ""
        return f"{noun} without a session.id attribute naming a session: {self.rejected}"


def _number(value: Any) -> float:
    """A count or amount as sent (a number, or its text); 0 for anything else."""
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return 0.0
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value < MOST:
        return 0.0
    return float(value)


def _client_session(attributes: dict[str, Any], resource: dict[str, Any]) -> str | None:
    key = attributes.get(SESSION_KEY, resource.get(SESSION_KEY))
    if isinstance(key, str) and 0 < len(key) <= SESSION_KEY_MAX and key.isprintable():
        return key
    return None


class _Tally:
    """Sums records into a Usage per client session as they are read."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us
        self.usages: dict[str, Usage] = {}
        self.growths: list[Growth] = []
        self.accepted = 0
        self.rejected = 0

    def decoded(self) -> Decoded:
        return Decoded(self.usages, self.growths, self.accepted, self.rejected)

    def _time_us(self, *nanos: Any) -> int:
        for value in nanos:
            try:
                wanted = isinstance(value, int | str) and not isinstance(value, bool)
                number = int(value) if wanted else 0
            except ValueError:
                number = 0
            if 0 < number < 2**63:
                return number // 1000
        return self.now_us

    def _counted(self, attributes: dict[str, Any], resource: dict[str, Any]) -> str | None:
        """The client session a record names, counted as accepted; None (rejected)."""
        key = _client_session(attributes, resource)
        if key is None:
            self.rejected += 1
        else:
            self.accepted += 1
        return key

    def log(
        self, resource: dict[str, Any], attributes: dict[str, Any], name: str, *times: Any
    ) -> None:
        key = self._counted(attributes, resource)
        if key is None:
            return
        sums = self.usages.setdefault(key, Usage())
        sums.seen(self._time_us(*times))
        event = str(attributes.get("event.name") or name).removeprefix(EVENT_PREFIX)
        if event == "api_request":
            sums.add("api_requests", 1)
            for kind in TOKEN_KINDS:
                sums.add(kind, _number(attributes.get(kind)))
            cost = _number(attributes.get("cost_usd"))
            sums.add("cost_usd", cost)
            sums.add("api_ms", _number(attributes.get("duration_ms")))
            sums.detail("model", str(attributes.get("model") or "-"), cost=cost)
        elif event == "api_error":
            sums.add("api_errors", 1)
            status = attributes.get("status_code")
            sums.detail("error", str(status if status else attributes.get("error") or "-"))
        elif event == "tool_result":
            failed = str(attributes.get("success")).lower() != "true"
            sums.add("tool_calls", 1)
            sums.add("tool_failures", int(failed))
            sums.detail("tool", str(attributes.get("tool_name") or "-"), failed=failed)
        elif event == "user_prompt":
            sums.add("prompts", 1)

    def point(
        self,
        metric: str,
        temporality: int,
        resource: dict[str, Any],
        attributes: dict[str, Any],
        value: Any,
        start: Any,
        time: Any,
    ) -> None:
        key = self._counted(attributes, resource)
        if key is None or metric != ACTIVE_TIME:
            return
        amount, time_us = _number(value), self._time_us(time)
        if temporality == CUMULATIVE:
            identity = json.dumps([metric, sorted(attributes.items()), str(start)], default=str)
            series = hashlib.sha256(identity.encode()).hexdigest()[:32]
            self.growths.append(Growth(key, series, "active_seconds", amount, time_us))
            return
        sums = self.usages.setdefault(key, Usage())
        sums.add("active_seconds", amount)
        sums.seen(time_us)


# -- JSON (OTLP/JSON: lowerCamelCase fields, 64-bit integers as strings) --


def _json_document(body: bytes, top: str) -> list[Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise OtlpError(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpError(f"expected a JSON object with {top}")
    return _items(document, top)


def _items(holder: Any, name: str) -> list[Any]:
    found = _field(holder, name)
    if found is None:
        return []
    if not isinstance(found, list):
        raise OtlpError(f"{name} must be a list")
    return found


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return None
    [(kind, given)] = value.items()
    if kind == "intValue":
        try:
            return int(given)
        except (TypeError, ValueError):
            return None
    return given if kind in ("stringValue", "doubleValue", "boolValue") else None


def _json_attributes(holder: Any) -> dict[str, Any]:
    return {
        str(pair.get("key")): _json_value(pair.get("value"))
        for pair in _items(holder, "attributes")
        if isinstance(pair, dict)
    }


def logs_from_json(body: bytes, now_us: int) -> Decoded:
    tally = _Tally(now_us)
    for resource_logs in _json_document(body, "resourceLogs"):
        resource = _json_attributes(_field(resource_logs, "resource"))
        for scope_logs in _items(resource_logs, "scopeLogs"):
            for record in _items(scope_logs, "logRecords"):
                if not isinstance(record, dict):
                    raise OtlpError("logRecords must hold objects")
                body_value = _json_value(record.get("body"))
                name = record.get("eventName") or body_value
                times = (record.get("timeUnixNano"), record.get("observedTimeUnixNano"))
                tally.log(resource, _json_attributes(record), str(name or ""), *times)
    return tally.decoded()


def metrics_from_json(body: bytes, now_us: int) -> Decoded:
    tally = _Tally(now_us)
    for resource_metrics in _json_document(body, "resourceMetrics"):
        resource = _json_attributes(_field(resource_metrics, "resource"))
        for scope_metrics in _items(resource_metrics, "scopeMetrics"):
            for metric in _items(scope_metrics, "metrics"):
                name = str(_field(metric, "name") or "")
                for kind in ("sum", "gauge"):
                    data = _field(metric, kind)
                    temporality = int(_number(_field(data, "aggregationTemporality")))
                    for point in _items(data, "dataPoints"):
                        value = _field(point, "asDouble")
                        tally.point(
                            name,
                            temporality,
                            resource,
                            _json_attributes(point),
                            _field(point, "asInt") if value is None else value,
                            _field(point, "startTimeUnixNano"),
                            _field(point, "timeUnixNano"),
                        )
    return tally.decoded()


def _field(holder: Any, name: str) -> Any:
    return holder.get(name) if isinstance(holder, dict) else None


# -- protobuf --


def _proto_attributes(pairs: Any) -> dict[str, Any]:
    attributes = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        scalar = kind in ("string_value", "int_value", "double_value", "bool_value")
        attributes[pair.key] = getattr(pair.value, kind) if scalar else None
    return attributes


def _parsed(message: Any, body: bytes) -> Any:
    from google.protobuf.message import DecodeError

    try:
        message.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise OtlpError(f"the body is not a protobuf {type(message).__name__}: {exc}") from exc
    return message


def logs_from_protobuf(body: bytes, now_us: int) -> Decoded:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    tally = _Tally(now_us)
    for resource_logs in _parsed(ExportLogsServiceRequest(), body).resource_logs:
        resource = _proto_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                name = record.event_name or record.body.string_value
                times = (record.time_unix_nano, record.observed_time_unix_nano)
                tally.log(resource, _proto_attributes(record.attributes), name, *times)
    return tally.decoded()


def metrics_from_protobuf(body: bytes, now_us: int) -> Decoded:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    tally = _Tally(now_us)
    for resource_metrics in _parsed(ExportMetricsServiceRequest(), body).resource_metrics:
        resource = _proto_attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind not in ("sum", "gauge"):
                    continue
                data = getattr(metric, kind)
                temporality = data.aggregation_temporality if kind == "sum" else 0
                for point in data.data_points:
                    which = point.WhichOneof("value")
                    tally.point(
                        metric.name,
                        temporality,
                        resource,
                        _proto_attributes(point.attributes),
                        getattr(point, which) if which else 0,
                        point.start_time_unix_nano,
                        point.time_unix_nano,
                    )
    return tally.decoded()


DECODERS = {
    ("logs", "json"): logs_from_json,
    ("logs", "protobuf"): logs_from_protobuf,
    ("metrics", "json"): metrics_from_json,
    ("metrics", "protobuf"): metrics_from_protobuf,
}


def decode(signal: str, form: str, body: bytes, now_us: int) -> Decoded:
    return DECODERS[(signal, form)](body, now_us)


def _leave_with(parent: int) -> None:
    """In the decoder process: exit once the server is gone, even killed (its pipes do
    not tell: the worker holds both ends of its queue)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Decoder:
    """Decodes export requests in a process of its own, started on first use: a 500-record
    request takes ~10 ms of Python, which in the server's process would hold its GIL
    (json.loads of it alone, ~2 ms at a stretch) while tracked events wait. A decoder
    process that dies is replaced at the next request."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def __call__(self, signal: str, form: str, body: bytes, now_us: int) -> Decoded:
        import multiprocessing  # on use: a server nobody sends telemetry never loads it
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_leave_with,
                initargs=(os.getpid(),),
            )
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, decode, signal, form, body, now_us
            )
        except BrokenProcessPool as exc:
            if self._pool is pool:
                self._pool = None
            pool.shutdown(wait=False)
            raise DecoderGone("the OTLP decoder process stopped; retry") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class DecoderGone(StoreUnavailable):
    """The decoder process died under a request: worth a retry, as a store failure is."""


async def ingest(
    service: SessionService, decoder: Decoder, signal: str, form: str, body: bytes
) -> Decoded:
    """Decode an export request (in the decoder process) and add its usage to the
    sessions it names. Raises OtlpError for a body that is not one, and the store's
    errors as they are."""
    decoded = await decoder(signal, form, body, service.manager.clock())
    if decoded.usages or decoded.growths:
        await service.manager.record_usage(decoded.usages, decoded.growths)
    if service.metrics is not None:
        service.metrics.telemetry(signal, decoded.accepted, decoded.rejected)
        for sums in decoded.usages.values():
            for kind in TOKEN_KINDS:
                service.metrics.tokens_used(kind.removesuffix("_tokens"), sums.counts[kind])
            for (kind, name), (_, _, cost) in sums.details.items():
                if kind == "model":
                    service.metrics.used(name, cost)
    return decoded
