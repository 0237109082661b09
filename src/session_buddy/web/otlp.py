"""`POST /v1/logs` and `POST /v1/metrics`: an OTLP/HTTP receiver, so that an agent's
OpenTelemetry exporter (Claude Code's, pointed here by OTEL_EXPORTER_OTLP_ENDPOINT) reports
what each session used.

Answers follow the OTLP/HTTP specification: 200 with an export response in the request's
own encoding (a partial success names what was rejected); 400 for a body that is not an
export request, 415 for an encoding we cannot read, never retried; 429 and 503 with
Retry-After while the server is busy or the store cannot write, which exporters retry.
The body limit of every route (1 MiB) holds as sent; a gzip body may inflate to
INFLATED_MAX_BYTES, no more.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from session_buddy.app import otlp
from session_buddy.app.auth import WRITE_SCOPE, AuthError, Caller, bearer_token
from session_buddy.app.service import SessionService
from session_buddy.core.errors import SessionBuddyError, StoreUnavailable
from session_buddy.web.middleware import auth_refusal

OTLP_PATHS = {"/v1/logs": "logs", "/v1/metrics": "metrics"}
INFLATED_MAX_BYTES = 8 * 1024 * 1024
# Export requests decoded and written at once; more wait for a retry (429), so that a
# flood of telemetry never crowds out session events.
AT_ONCE = 4
FORMS = {
    "application/json": "json",
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
}
_REJECTED_FIELD = {"logs": "rejectedLogRecords", "metrics": "rejectedDataPoints"}
_NOUN = {"logs": "log records", "metrics": "data points"}
_STATUS_CODES = {400: 3, 413: 3, 415: 3, 429: 8, 503: 14}  # google.rpc.Code


class Receiver:
    """The OTLP routes of one server."""

    def __init__(self, service: SessionService) -> None:
        self.service = service
        self.decoder = otlp.Decoder()
        self._slots = asyncio.Semaphore(AT_ONCE)

    async def __call__(self, request: Request) -> Response:
        signal = OTLP_PATHS[request.url.path]
        form = FORMS.get(request.headers.get("content-type", "").split(";")[0].strip().lower())
        try:
            self.service.authorize(
                Caller(bearer_token(request.headers.get("authorization"))), WRITE_SCOPE
            )
        except AuthError as exc:
            return auth_refusal(exc)
        if form is None:
            kinds = ", ".join(FORMS)
            return _status(415, "json", f"Content-Type must be one of {kinds}")
        if self._slots.locked():
            return _status(429, form, "busy with other exports, retry", retry_after=1)
        async with self._slots:
            return await self._export(signal, form, request)

    async def _export(self, signal: str, form: str, request: Request) -> Response:
        try:
            body = _inflated(await request.body(), request.headers.get("content-encoding"))
            decoded = await otlp.ingest(self.service, self.decoder, signal, form, body)
        except _Refused as exc:
            return _status(exc.status, form, str(exc))
        except otlp.OtlpError as exc:
            return _status(400, form, f"not an OTLP {signal} export request: {exc}")
        except StoreUnavailable as exc:
            failed = self.service.failure(exc)
            return _status(503, form, failed["error"], retry_after=2)
        except SessionBuddyError as exc:  # a value the store refuses: sending it again won't do
            return _status(400, form, self.service.failure(exc)["error"])
        return _accepted(signal, form, decoded)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _inflated(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise _Refused(415, f"Content-Encoding {encoding!r}: only gzip is read")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, INFLATED_MAX_BYTES)
    except zlib.error as exc:
        raise _Refused(400, f"the gzip body cannot be read: {exc}") from exc
    if inflater.unconsumed_tail:
        raise _Refused(413, f"the body inflates past {INFLATED_MAX_BYTES // 1024 // 1024} MiB")
    return inflated


def _accepted(signal: str, form: str, decoded: otlp.Decoded) -> Response:
    problem = decoded.problem(_NOUN[signal])
    if form == "json":
        partial = {_REJECTED_FIELD[signal]: str(decoded.rejected), "errorMessage": problem}
        answer: dict[str, Any] = {"partialSuccess": partial} if problem else {}
        return Response(json.dumps(answer), media_type="application/json")
    return Response(
        _export_response(decoded.rejected, problem), media_type="application/x-protobuf"
    )


def _status(status: int, form: str, message: str, *, retry_after: int | None = None) -> Response:
    """A refusal as OTLP says: a google.rpc.Status in the request's encoding (the JSON one
    also in the one refusal shape of every route)."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    code = _STATUS_CODES.get(status, 2)
    if form == "protobuf":
        return Response(
            _status_message(code, message),
            status_code=status,
            media_type="application/x-protobuf",
            headers=headers,
        )
    error_code = {415: "unsupported_media_type", 429: "busy", 503: "store_unavailable"}
    body = {
        "code": code,
        "message": message,
        "error": message,
        "error_code": error_code.get(status, "invalid_argument"),
    }
    return Response(
        json.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


# The two answers OTLP/HTTP gives in protobuf, each a number and a text, are written
# here in protobuf's wire form: the server's process never loads protobuf for them
# (~3 MB), and google.rpc.Status would need googleapis-common-protos besides.


def _number_and_text(number: int, text: str) -> bytes:
    """A message of field 1 (an integer) and field 2 (a string)."""
    encoded = text.encode()
    return b"\x08" + _varint(number) + b"\x12" + _varint(len(encoded)) + encoded


def _status_message(code: int, message: str) -> bytes:
    """google.rpc.Status {code = 1, message = 2}."""
    return _number_and_text(code, message)


def _export_response(rejected: int, message: str) -> bytes:
    """Export(Logs|Metrics)ServiceResponse {partial_success = 1 {rejected = 1,
    error_message = 2}}: empty when nothing was rejected."""
    if not rejected:
        return b""
    partial = _number_and_text(rejected, message)
    return b"\x0a" + _varint(len(partial)) + partial


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)
