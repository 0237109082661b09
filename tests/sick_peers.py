"""Peers that are sick rather than absent, for the tests of deadlines and bounds: an HTTP
server that answers each request with a script of its own (too little, too much, too
slowly, not HTTP at all), a TCP proxy that holds every answer back, and a C shim that
makes fsync slow in a process it is preloaded into."""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

Script = Callable[[socket.socket], None]


def _read_request(connection: socket.socket) -> None:
    """Read a request head and its Content-Length body (the peer must be heard out)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return
        body += chunk


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    """An HTTP server on a free port that answers every request with `script`; yields
    its MCP URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    def answer(connection: socket.socket) -> None:
        with connection, suppress(OSError):
            _read_request(connection)
            script(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    finally:
        stop.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def sends(data: bytes) -> Script:
    return lambda connection: connection.sendall(data)


def trickles(data: bytes, every: float) -> Script:
    """One byte every `every` seconds, for as long as the client listens."""

    def script(connection: socket.socket) -> None:
        for byte in data:
            connection.sendall(bytes([byte]))
            time.sleep(every)

    return script


def endless(head: bytes, filler: bytes) -> Script:
    """`head`, then `filler` over and over until the client hangs up."""

    def script(connection: socket.socket) -> None:
        connection.sendall(head)
        while True:
            connection.sendall(filler)

    return script


@contextmanager
def delaying_proxy(port: int, delay: float) -> Iterator[int]:
    """A TCP proxy to 127.0.0.1:`port` that holds every answer back `delay` seconds;
    yields its own port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def relay(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", port)) as server:
            while True:
                readable, _, _ = select.select([client, server], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is server:
                        time.sleep(delay)
                        client.sendall(data)
                    else:
                        server.sendall(data)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


SLOW_FSYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
/* While the file SLOW_FSYNC_SWITCH names holds a number, every fsync and fdatasync of
   the process first waits that many milliseconds. */
static void pause_for_it(void) {
    const char *path = getenv("SLOW_FSYNC_SWITCH");
    FILE *file = path ? fopen(path, "r") : NULL;
    int ms = 0;
    if (!file) return;
    if (fscanf(file, "%d", &ms) != 1) ms = 0;
    fclose(file);
    if (ms > 0) usleep(ms * 1000);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fsync");
    pause_for_it();
    return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fdatasync");
    pause_for_it();
    return real(fd);
}
"""


def slow_fsync_library(folder: Path) -> Path | None:
    """A shared library that makes fsync and fdatasync wait, in the process it is
    preloaded into (LD_PRELOAD), as many milliseconds as the file $SLOW_FSYNC_SWITCH
    holds while it exists; None without a C compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    source, library = folder / "slow_fsync.c", folder / "slow_fsync.so"
    source.write_text(SLOW_FSYNC_C)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"], check=True
    )
    return library
