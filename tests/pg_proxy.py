"""A TCP proxy in front of the test PostgreSQL server, to make the database sick.

- `lose_next_commit()`: the next COMMIT a client sends is forwarded, the server's answer
  (it did commit) is thrown away and that client's connection closed: the client sees
  its connection die during COMMIT, the failure a retrying store must not count twice.
- `refuse()`: every connection is cut and new ones are refused, as when the server is
  down; `hang()`: nothing gets through either way, and new connections are accepted and
  never answered, as when it is cut off the network; `heal()` ends either.

Clients must connect with `sslmode=disable` (the proxy reads the protocol's messages;
`url()` adds it).
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class PostgresProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self._passing = threading.Event()  # cleared while hanging
        self._passing.set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.commits_lost = 0
        self._accepting()

    def url(self, database_url: str) -> str:
        """`database_url` pointed at the proxy, without TLS or GSS encryption."""
        proxied = re.sub(r"@[^/]+/", f"@127.0.0.1:{self.port}/", database_url, count=1)
        joiner = "&" if "?" in proxied else "?"
        return f"{proxied}{joiner}sslmode=disable&gssencmode=disable"

    def lose_next_commit(self) -> None:
        self._armed.set()

    def refuse(self) -> None:
        self._stop_listening()
        self._cut_all()

    def hang(self) -> None:
        self._passing.clear()

    def heal(self) -> None:
        self._passing.set()
        if self._listener.fileno() == -1:
            self._listener = socket.create_server(("127.0.0.1", self.port))
            self._accepting()

    def close(self) -> None:
        self._stop_listening()
        self._cut_all()
        self._passing.set()

    def _stop_listening(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
        self._listener.close()

    def _cut_all(self) -> None:
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def _accepting(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._passing.wait()  # hanging: accepted, never answered
        with suppress(OSError):  # cut by refuse() or close(), or by a peer
            server = socket.create_connection(self.target)
            for end in (client, server):  # small messages: no Nagle delays
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.update((client, server))
            self._relay(client, server)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            pending = b""
            started = False  # the untyped startup message has gone by
            commit_sent = False
            while True:
                readable, _, _ = select.select([client, server], [], [], 0.05)
                if not self._passing.is_set():
                    continue  # cut off: the bytes wait where they are
                if server in readable:
                    data = server.recv(65536)
                    if not data:
                        return
                    if commit_sent:  # the server committed: its answer is lost
                        self.commits_lost += 1
                        return
                    client.sendall(data)
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    pending += data
                    for message in _messages(pending, started):
                        started = True
                        pending = pending[len(message) :]
                        server.sendall(message)
                        commit = message[:1] == b"Q" and message[5:11] == b"COMMIT"
                        if commit and self._armed.is_set():
                            self._armed.clear()
                            commit_sent = True


def _messages(buffer: bytes, started: bool) -> Iterator[bytes]:
    """Whole protocol messages at the start of `buffer` (the first one untyped)."""
    offset = 0
    while True:
        head = 4 if not started else 5
        if len(buffer) - offset < head:
            return
        length = struct.unpack("!I", buffer[offset + head - 4 : offset + head])[0]
        size = length if not started else length + 1
        if len(buffer) - offset < size:
            return
        yield buffer[offset : offset + size]
        offset += size
        started = True


@contextmanager
def postgres_proxy(database_url: str) -> Iterator[tuple[PostgresProxy, str]]:
    """A proxy to the server of `database_url`, and the URL that goes through it."""
    place = re.search(r"@([^:/]+)(?::(\d+))?/", database_url)
    host, port = (place[1], int(place[2] or 5432)) if place else ("127.0.0.1", 5432)
    proxy = PostgresProxy((host, port))
    try:
        yield proxy, proxy.url(database_url)
    finally:
        proxy.close()
