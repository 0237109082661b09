"""The hook relay: one process per user and destination that keeps session-buddy
loaded, so that a Claude Code command hook is a bare Python start and one exchange over
a Unix socket, not a JSON parser, the state machine and a store opened (or an HTTP
client loaded) on every event (`benchmarks/README.md` compares the designs).

The hook sends its stamp, its deadline (and token) and Claude Code's payload, unparsed;
the relay delivers them exactly as the hook would have (`hook_delivery.deliver`: one
durable write into the store, kept open, or one POST to the server), and only then
answers. So an answered event is on disk, and the events of one Claude session,
sent one hook after the other, are written in that order. When no relay answers (none
yet, one that died, one that hangs past the hook's deadline) the hook does the work
itself, with the same stamp (a repeat changes nothing), and starts a relay for the next
event. A relay leaves after IDLE_SECONDS without events ($SESSION_BUDDY_RELAY_IDLE),
when its store's folder goes, or when session-buddy's code changes under it.

The socket lives in a folder only its user can open ($XDG_RUNTIME_DIR, else /tmp);
a folder anyone else owns or can enter is never used.
"""

from __future__ import annotations

import os
import sys
import zlib

from session_buddy import __version__, config, wire

TYPE_CHECKING = False  # see session_buddy.lazy: the hook loads the client half
if TYPE_CHECKING:
    from typing import Any

IDLE_SECONDS = 600.0  # $SESSION_BUDDY_RELAY_IDLE overrides it
TICK_SECONDS = 5.0  # at most this long between looks at its store and its code
MAX_REPLY = 64 * 1024
FIELDS = (
    *("timestamp", "event_id", "pid", "username", "home", "hostname", "python_version"),
    "platform",
)
FRAME = (*FIELDS, "token", "within")  # the stamp, and how the relay is to deliver it
SPARE_SECONDS = 0.1  # of the hook's deadline, for the exchange with the relay


def socket_path(destination: str) -> str:
    """The relay's socket for a store (and the spool beside it: both are its state)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    key = zlib.crc32(f"{destination}\0{config.spool_path()}".encode())
    return os.path.join(base, f"session-buddy-{os.getuid()}", f"hooks-{key:08x}-{__version__}")


def _private(folder: str) -> bool:
    try:
        found = os.stat(folder)
    except OSError:
        return False
    return found.st_uid == os.getuid() and not found.st_mode & 0o077


# The hook's half: standard library C modules only.


def ask(
    destination: str, stamp: dict[str, Any], raw: bytes, *, token: str | None, within: float
) -> tuple[str, str] | None:
    """Have the relay deliver one payload within `within` s: (outcome, what to say), or
    None when no relay answers and the hook must deliver it itself. A relay that does
    not answer in time is stopped (the next hook starts another) and the answer is
    `transient`: the time is spent, the hook spools the event."""
    import _socket

    path = socket_path(destination)
    if not _private(os.path.dirname(path)):
        start(destination)
        return None
    given = stamp | {"token": token or "", "within": max(0.05, within - SPARE_SECONDS)}
    line = "\t".join(f"{name}={_flat(given.get(name, ''))}" for name in FRAME)
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    connection.settimeout(within)
    try:
        connection.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        connection.close()
        start(destination)
        return None
    except OSError:
        connection.close()
        return None
    reply = b""
    try:
        connection.sendall(line.encode() + b"\n" + raw)
        connection.shutdown(_socket.SHUT_WR)
        while len(reply) <= MAX_REPLY and (chunk := connection.recv(MAX_REPLY)):
            reply += chunk
    except TimeoutError:
        _stop(path)
        return wire.TRANSIENT, f"the hook relay did not answer within {within:g} s"
    except OSError:
        return None
    finally:
        connection.close()
    outcome, _, said = reply.decode(errors="replace").rstrip("\n").partition("\t")
    return (outcome, said) if outcome else None


def _stop(path: str) -> None:
    """Stop a relay that hangs (its pid is in its lock file)."""
    import signal

    try:
        with open(f"{path}.lock", encoding="ascii") as lock:
            os.kill(int(lock.read().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _flat(value: object) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")


def start(destination: str) -> None:
    """Start a relay for `destination`, detached (its own session, no terminal, nothing
    Claude Code waits for), unless the folder for its socket cannot be made private."""
    folder = os.path.dirname(socket_path(destination))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return
    if not _private(folder):
        return
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    argv = [sys.executable, "-m", "session_buddy.client.hook_relay", destination]
    from contextlib import suppress

    with suppress(OSError):  # then the hook delivers on its own, as without a relay
        os.posix_spawn(sys.executable, argv, os.environ, file_actions=quiet, setsid=True)


# The relay's half.


def serve(destination: str) -> None:
    """Answer hooks for `destination` until idle, orphaned or outdated; at most one relay
    per socket (a lock beside it, holding the relay's pid)."""
    import fcntl
    import socket
    import time

    path = socket_path(destination)
    if not _private(os.path.dirname(path)):
        return
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return  # another relay serves it
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())  # who serves it, for people and tests
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.exists(path):
            os.unlink(path)  # a dead relay's
        listener.bind(path)
        listener.listen(64)
        idle_after = float(os.environ.get(config.RELAY_IDLE_ENV) or IDLE_SECONDS)
        listener.settimeout(min(TICK_SECONDS, idle_after / 2))
        code = _code_stamp()
        last = time.monotonic()
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                idle = time.monotonic() - last > idle_after
                if idle or _code_stamp() != code or not _store_there(destination):
                    return
                continue
            with connection:
                _answer(connection, destination)
            last = time.monotonic()
    finally:
        if os.path.exists(path):
            os.unlink(path)
        listener.close()
        os.close(lock)


def _answer(connection: Any, destination: str) -> None:
    from session_buddy.client.claude_hook import HOOK_TIMEOUT

    connection.settimeout(HOOK_TIMEOUT)  # to read the request; the reply waits for the work
    received = b""
    try:
        while chunk := connection.recv(1 << 16):
            received += chunk
            if len(received) > wire.MAX_HOOK_PAYLOAD_BYTES + MAX_REPLY:
                break
        line, _, raw = received.partition(b"\n")
        outcome, said = relayed(destination, line.decode(errors="replace"), raw)
        connection.sendall(f"{outcome}\t{_flat(said)}\n".encode())
    except OSError:
        pass  # the hook gave up waiting: it delivers the event itself


def relayed(destination: str, line: str, raw: bytes) -> tuple[str, str]:
    """Deliver one hook's payload as the hook itself would: (outcome, what to say)."""
    from session_buddy.client import claude_hook
    from session_buddy.client.hook_delivery import deliver

    if claude_hook.waiting(destination):
        return "waiting", "older events wait in the spool"
    given: dict[str, str] = dict(field.partition("=")[::2] for field in line.split("\t"))
    stamp: dict[str, Any] = {name: given.get(name, "") for name in FIELDS}
    stamp["pid"] = int(stamp["pid"]) if stamp["pid"].isdigit() else None
    payload = claude_hook.parsed(raw)
    if isinstance(payload, str):
        return wire.REFUSED, payload
    stamped = payload | {wire.ORIGIN_KEY: claude_hook.origin_for(payload, stamp)}
    try:
        within = float(given.get("within") or claude_hook.HOOK_TIMEOUT)
    except ValueError:
        within = claude_hook.HOOK_TIMEOUT
    token = given.get("token") or None
    delivered = deliver(destination, stamped, token=token, within=within, keep_open=True)
    return delivered.outcome, delivered.said


def _code_stamp() -> float:
    """The newest change to session-buddy's code: a relay must not run yesterday's."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return max(
        os.stat(os.path.join(folder, name)).st_mtime
        for folder, _, names in os.walk(package)
        for name in names
        if name.endswith(".py")
    )


def _store_there(destination: str) -> bool:
    """Does the store's folder still exist (an SQLite store; a server database: yes)?"""
    prefix = "sqlite:///"
    if not destination.startswith(prefix):
        return True
    return os.path.isdir(os.path.dirname(destination[len(prefix) :].split("?")[0]))


if __name__ == "__main__":
    serve(sys.argv[1])
