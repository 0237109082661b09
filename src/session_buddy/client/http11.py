"""HTTP/1.1 exchanges with one deadline and a size cap, on the standard library's socket.

A hook or a shell must never wait longer than it said, nor read more than it can hold,
whatever a server sends: a trickle of one byte at a time, an endless header or body, a
Content-Length that lies, a connection closed half-way. The deadline covers the whole
exchange (connecting, sending, every read); the reply is read by its Content-Length or
its chunks, and only up to `max_reply` bytes; anything else is an HttpError.

Hand-made on purpose: `http.client` applies its timeout to each read and reads whatever
length it is told, and costs the hook ~16 ms more to import than `socket` alone (httpx
~57 ms more; measured with `python -X importtime`).
"""

from __future__ import annotations

import socket
import time

MAX_HEAD_BYTES = 64 * 1024


class HttpError(Exception):
    """No answer within the deadline and limits: not reachable, too slow, too large, or
    not HTTP. `sent`: the whole request went out, so the server may have taken it."""

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class Reply:
    """An HTTP reply (a plain class: NamedTuple would import `typing`)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body


class Connection:
    """One connection to `host:port`, kept between exchanges while the server allows."""

    def __init__(self, host: str, port: int, *, tls: bool = False) -> None:
        self.host, self.port, self.tls = host, port, tls
        self._socket: socket.socket | None = None
        self._buffer = b""

    def exchange(self, request: bytes, *, timeout: float, max_reply: int) -> Reply:
        """Send one whole request (head and body) and read its reply, all within
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        sent = False
        try:
            connection = self._connected(deadline)
            connection.settimeout(_left(deadline))
            connection.sendall(request)
            sent = True
            reply, keep = self._read(deadline, max_reply)
        except (OSError, ValueError) as exc:
            self.close()
            raise HttpError(_why(exc), sent=sent) from exc
        except HttpError as exc:
            self.close()
            raise HttpError(str(exc), sent=sent) from exc
        if not keep:
            self.close()
        return reply

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket, self._buffer = None, b""

    def _connected(self, deadline: float) -> socket.socket:
        if self._socket is None:
            family, address = _resolved(self.host, self.port, deadline)
            plain = socket.socket(family, socket.SOCK_STREAM)
            plain.settimeout(_left(deadline))
            try:
                plain.connect(address)
            except OSError:
                plain.close()
                raise
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                import ssl  # only for https: it costs ~6 ms to import

                context = ssl.create_default_context()
                plain = context.wrap_socket(plain, server_hostname=self.host)
            self._socket = plain
        return self._socket

    def _fill(self, deadline: float, limit: int) -> None:
        """Read more into the buffer; HttpError past the deadline, at EOF, or past `limit`."""
        assert self._socket is not None
        self._socket.settimeout(_left(deadline))
        data = self._socket.recv(65536)
        if not data:
            raise HttpError("the server closed the connection before its reply was whole")
        self._buffer += data
        if len(self._buffer) > limit:
            raise HttpError(f"the reply is larger than the {limit:,} bytes taken")

    def _take(self, size: int) -> bytes:
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def _line(self, deadline: float, limit: int) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill(deadline, limit)
        return self._take(self._buffer.index(b"\r\n") + 2)[:-2]

    def _read(self, deadline: float, max_reply: int) -> tuple[Reply, bool]:
        while b"\r\n\r\n" not in self._buffer:
            self._fill(deadline, MAX_HEAD_BYTES)
        head = self._take(self._buffer.index(b"\r\n\r\n") + 4).decode("latin-1")
        status_line, *lines = head[:-4].split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
            raise HttpError(f"not an HTTP reply: {status_line[:60]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise HttpError(f"a malformed header line: {line[:60]!r}")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        status = int(code)
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        reply, keep = self._body(status, headers, deadline, max_reply, keep)
        return reply, keep and not self._buffer  # bytes after the reply: start afresh

    def _body(
        self, status: int, headers: dict[str, str], deadline: float, max_reply: int, keep: bool
    ) -> tuple[Reply, bool]:
        if status in (204, 304) or 100 <= status < 200:
            return Reply(status, headers, b""), keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Reply(status, headers, self._chunks(deadline, max_reply)), keep
        length = headers.get("content-length")
        if length is None:  # the body runs to the end of the connection
            return Reply(status, headers, self._to_close(deadline, max_reply)), False
        if not (length.isascii() and length.isdigit()) or len(length) > 18:
            raise HttpError(f"a malformed Content-Length: {length[:30]!r}")
        if int(length) > max_reply:
            announced = f"{int(length):,} bytes"
            raise HttpError(f"the reply announces {announced}, over the {max_reply:,} taken")
        while len(self._buffer) < int(length):
            self._fill(deadline, int(length) + MAX_HEAD_BYTES)
        return Reply(status, headers, self._take(int(length))), keep

    def _chunks(self, deadline: float, max_reply: int) -> bytes:
        body = b""
        while True:
            size_text = self._line(deadline, max_reply + MAX_HEAD_BYTES).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise HttpError(f"a malformed chunk size: {size_text[:20]!r}") from exc
            if size == 0:
                while self._line(deadline, MAX_HEAD_BYTES):  # trailers, up to the empty line
                    pass
                return body
            if len(body) + size > max_reply:
                raise HttpError(f"the reply is larger than the {max_reply:,} bytes taken")
            while len(self._buffer) < size + 2:
                self._fill(deadline, max_reply + MAX_HEAD_BYTES)
            body += self._take(size)
            if self._take(2) != b"\r\n":
                raise HttpError("a chunk does not end where its size says")

    def _to_close(self, deadline: float, max_reply: int) -> bytes:
        assert self._socket is not None
        while True:
            self._socket.settimeout(_left(deadline))
            data = self._socket.recv(65536)
            if not data:
                return self._take(len(self._buffer))
            self._buffer += data
            if len(self._buffer) > max_reply:
                raise HttpError(f"the reply is larger than the {max_reply:,} bytes taken")


def request_bytes(
    method: str, path: str, host_header: str, headers: dict[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _resolved(host: str, port: int, deadline: float) -> tuple[int, tuple[str, int]]:
    """(family, address) of `host`; a name is looked up within the deadline (the
    resolver itself waits seconds on an unreachable DNS server)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.strip("[]"))
        except OSError:
            continue
        return family, (host.strip("[]"), port)
    import threading  # only names need it

    found: list[tuple[int, tuple[str, int]]] = []

    def look_up() -> None:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return
        for family, _, _, _, address in answers:
            found.append((family, (str(address[0]), int(address[1]))))

    lookup = threading.Thread(target=look_up, daemon=True)
    lookup.start()
    lookup.join(_left(deadline))
    if not found:
        raise HttpError(f"cannot find {host!r} (name lookup failed or took too long)")
    return found[0]


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise HttpError("no whole reply within the time allowed")
    return left


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no whole reply within the time allowed"
    return str(exc) or type(exc).__name__
