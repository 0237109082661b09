"""ASGI middlewares in front of every HTTP route, each with one job (as Starlette's
TrustedHostMiddleware): trusted Host and Origin, the request body limit, bearer tokens.

Every refusal from the HTTP layer has one shape, `refusal()`: `{"error": message,
"error_code": code}`, as tool results name their errors."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session_buddy.app.auth import CLAIMS_STATE_KEY, AuthError, TokenAuthority, bearer_token

MAX_BODY_BYTES = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Protocol messages that carry no session data: a client may send them before it has
# presented a token (clients that pass `token` as a tool argument do exactly that).
OPEN_METHODS = {"initialize", "ping", "tools/list"}
OPEN_TOOLS = {"health_check"}


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> set[str]:
    """Host names (any port) the server answers: loopback, the bound address, named ones
    (`--allowed-host example.com` or `example.com:8443`)."""
    names = {name.lower() for name in LOOPBACK_HOSTS}
    if bind_host not in ("0.0.0.0", "::"):
        names.add(bind_host.strip("[]").lower())
    names.update(_host_name(name) for name in extra)
    return names - {""}


def _host_name(authority: str) -> str:
    """`Host`/Origin authority without its port, lower case (`[::1]:80` -> `::1`)."""
    return _host_and_port(authority)[0]


def _host_and_port(authority: str, default_port: int | None = None) -> tuple[str, int | None]:
    """(host name, port) of an authority, lower case; ("", None) when malformed."""
    parsed = urlsplit(f"//{authority}")
    try:
        port = parsed.port
    except ValueError:
        return "", None
    return (parsed.hostname or "").lower(), port if port is not None else default_port


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_allowed(origin: str, host_header: str, named: set[tuple[str, int]]) -> bool:
    """Is a browser's Origin this server's own (its host and port are the Host header's;
    a Host without a port is the origin scheme's default one), or one named with its
    port (`--allowed-host example.com:8443`)? A page on another port of the same host is
    another origin."""
    parts = urlsplit(origin)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None:
        return False
    host, port = _host_and_port(parts.netloc, default)
    if not host:
        return False
    own_host, own_port = _host_and_port(host_header, default)
    return (host, port) == (own_host, own_port) or (host, port or 0) in named


def named_origins(extra: Iterable[str]) -> set[tuple[str, int]]:
    """The (host, port) pairs of `--allowed-host` entries that name a port."""
    pairs = (_host_and_port(name) for name in extra)
    return {(host, port) for host, port in pairs if host and port is not None}


# Past this many brackets a body is parsed here first: a JSON nesting too deep for the
# parser must be a 400, not a RecursionError deeper down.
BRACKETS_CHECKED = 1000


def refusal(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """The one shape of every HTTP-layer refusal."""
    body = {"error": message, "error_code": code}
    return JSONResponse(body, status_code=status, headers=headers or None)


def auth_refusal(exc: AuthError) -> JSONResponse:
    """401 for a missing or bad token, 403 for a token without the scope."""
    return refusal(403 if exc.code == "forbidden" else 401, exc.code, f"{exc.code}: {exc}")


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str, **headers: str
) -> None:
    await refusal(status, code, message, **headers)(scope, receive, send)


class TrustedHostMiddleware:
    """Refuses requests whose Host is not one of the allowed host names (421), or whose
    Origin is not this server's own, port included (403): DNS-rebinding and cross-site
    protection."""

    def __init__(
        self, app: ASGIApp, *, hosts: set[str], origins: set[tuple[str, int]] | None = None
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = origins or set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            host = headers.get("host", "")
            if _host_name(host) not in self.hosts:
                await _refuse(scope, receive, send, 421, "invalid_host", "Invalid Host header")
                return
            origin = headers.get("origin")
            if origin is not None and not origin_allowed(origin, host, self.origins):
                await _refuse(scope, receive, send, 403, "invalid_origin", "Invalid Origin header")
                return
        await self.app(scope, receive, send)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out the body read already, then the real messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _too_deep(body: bytes) -> bool:
    """Is this body JSON nested deeper than the parser can go?"""
    if body.count(b"[") + body.count(b"{") < BRACKETS_CHECKED:
        return False
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:
        return False  # not JSON: the route answers that
    return False


class BodyLimitMiddleware:
    """Refuses request bodies over `limit` bytes (413) on every path, whatever the
    method and credentials, and JSON nested too deep to parse (400)."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self.limit)
        if body is None:
            message = f"request body over {self.limit / 1024 / 1024:g} MiB"
            await _refuse(scope, receive, send, 413, "payload_too_large", message)
            return
        if _too_deep(body):
            await _refuse(scope, receive, send, 400, "invalid_json", "JSON nested too deeply")
            return
        await self.app(scope, replay(body, receive), send)


class BearerAuthMiddleware:
    """With a secret set, MCP requests need a valid credential (401 otherwise).

    A bearer header is verified here, once, on every path, and its claims handed on in
    the request scope (the connection ranks by them). Outside the MCP path the route
    decides what a missing or bad one means. On the MCP path, without a header, the
    handshake, health_check and tool calls that carry a valid `token` argument pass; the
    tools check that token's scope.
    """

    def __init__(self, app: ASGIApp, *, authority: TokenAuthority, path: str) -> None:
        self.app = app
        self.authority = authority
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        if not scope["path"].startswith(self.path):
            if header is not None:
                with contextlib.suppress(AuthError):
                    claims = self.authority.verify(bearer_token(header))
                    scope.setdefault("state", {})[CLAIMS_STATE_KEY] = claims
            await self.app(scope, receive, send)
            return
        if header is not None:
            try:
                claims = self.authority.verify(bearer_token(header))
            except AuthError as exc:
                await self._unauthorized(scope, receive, send, str(exc), "invalid_token")
                return
            scope.setdefault("state", {})[CLAIMS_STATE_KEY] = claims
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, MAX_BODY_BYTES) or b""  # BodyLimitMiddleware refused more
        problem = self._problem_without_header(body)
        if problem is not None:
            await self._unauthorized(scope, receive, send, *problem)
            return
        await self.app(scope, replay(body, receive), send)

    async def _unauthorized(
        self, scope: Scope, receive: Receive, send: Send, message: str, error: str | None
    ) -> None:
        challenge = 'Bearer realm="session-buddy"'
        if error:
            challenge += f", error={_quoted(error)}, error_description={_quoted(message)}"
        headers = {"WWW-Authenticate": challenge}
        await _refuse(
            scope, receive, send, 401, "unauthorized", f"unauthorized: {message}", **headers
        )

    def _problem_without_header(self, body: bytes) -> tuple[str, str | None] | None:
        """(message, OAuth error) when a request without a header may not pass."""
        if not body:
            return None  # GET/DELETE on the stream endpoint: nothing to read
        try:
            message = json.loads(body)
        except ValueError:
            return None  # let the transport answer with a parse error
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict):
                continue
            method = str(item.get("method"))
            if method in OPEN_METHODS or method.startswith("notifications/"):
                continue
            params = _object(item.get("params"))
            if method == "tools/call" and params.get("name") in OPEN_TOOLS:
                continue
            token = (
                _object(params.get("arguments")).get("token") if method == "tools/call" else None
            )
            if not isinstance(token, str) or not token:
                return "a bearer token is required", None
            try:
                self.authority.verify(token)
            except AuthError as exc:
                return str(exc), "invalid_token"
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _quoted(text: str) -> str:
    """An HTTP quoted-string (RFC 9110 5.6.4): printable ASCII, `"` and `\\` escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def control_character(text: str) -> str | None:
    """The first control character in `text`, if any."""
    return next((c for c in text if c < " " or c == "\x7f"), None)


class CleanRequestMiddleware:
    """Refuses (400) a path or query string that holds control characters once decoded
    (`%00`, `%0d%0a`): nothing the server answers or logs may carry them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
            found = control_character(scope["path"]) or control_character(query)
            if found is not None:
                message = f"control character {found!r} in the request's path or query"
                await _refuse(scope, receive, send, 400, "invalid_request", message)
                return
        await self.app(scope, receive, send)


_PLAIN_CODES = {404: "not_found", 405: "method_not_allowed"}


class RefusalShapeMiddleware:
    """Gives the plain-text 4xx answers of the routing underneath (404 no such path,
    405 method not allowed) the one JSON refusal shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def reshaped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                status = int(message["status"])
                content_type = Headers(raw=message["headers"]).get("content-type", "")
                if 400 <= status < 500 and content_type.startswith("text/plain"):
                    replaced = True
                    code = _PLAIN_CODES.get(status, "invalid_request")
                    allow = Headers(raw=message["headers"]).get("allow")
                    extra = {"Allow": allow} if allow else {}
                    reason = code.replace("_", " ")
                    await refusal(status, code, reason, **extra)(scope, _nothing, send)
                    return
            if not replaced:
                await send(message)

        await self.app(scope, receive, reshaped)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")
# Where the request scope says the dashboard's own address starts (the sub-path a
# proxy serves it under) and whether the browser reached it over https.
PREFIX_STATE_KEY = "session_buddy_prefix"
HTTPS_STATE_KEY = "session_buddy_https"


def valid_prefix(prefix: str) -> str:
    """A sub-path as `--root-path` takes it: `/sb`, `/tools/sessions`; "" for none."""
    prefix = prefix.rstrip("/")
    if prefix and not _PREFIX.fullmatch(prefix):
        raise ValueError(f"--root-path {prefix!r}: a path like /sb, of letters, digits, . _ ~ -")
    return prefix


class ForwardedPrefixMiddleware:
    """Serving under a sub-path behind a reverse proxy: the prefix is `--root-path`, or
    the `X-Forwarded-Prefix` of a proxy at one of the trusted addresses (as its
    `X-Forwarded-Proto` says whether the browser used https). A request whose path still
    holds the prefix (a proxy that does not strip it) is routed without it. Pages build
    every link, asset and form from the prefix."""

    def __init__(self, app: ASGIApp, *, prefix: str = "", trusted: Iterable[str] = ()) -> None:
        self.app = app
        self.prefix = valid_prefix(prefix)
        self.trusted = set(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        prefix, https = self.prefix, scope.get("scheme") == "https"
        client = scope.get("client")
        if client and client[0] in self.trusted:
            headers = Headers(scope=scope)
            forwarded = headers.get("x-forwarded-prefix", "").rstrip("/")
            if forwarded and _PREFIX.fullmatch(forwarded):
                prefix = forwarded
            https = https or headers.get("x-forwarded-proto", "").lower() == "https"
        path = scope["path"]
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            rest = path[len(prefix) :] or "/"
            scope = dict(scope, path=rest, raw_path=rest.encode())
        state = scope.setdefault("state", {})
        state[PREFIX_STATE_KEY], state[HTTPS_STATE_KEY] = prefix, https
        await self.app(scope, receive, send)
