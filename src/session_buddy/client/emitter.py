"""SessionEventEmitter: what a shell embeds to report its own session.

Never blocks a shell for long and never raises into it: each send has a short timeout,
undeliverable events go to the spool, and the end at exit is bounded (2 s in total).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Self

from session_buddy.client.delivery import Courier, destination_url, token_identity
from session_buddy.client.events import end_event, start_event
from session_buddy.client.spool import Destination, Spool
from session_buddy.client.transports import (
    DEFAULT_TIMEOUT,
    Transport,
    TransportError,
    open_transport,
)
from session_buddy.config import Settings
from session_buddy.timestamps import now_iso

EXIT_BUDGET_SECONDS = 2.0

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class SessionEventEmitter:
    """Reports one session of this process: start, heartbeats, end.

    `server_url`: `http://host:8678/mcp` (MCP over HTTP) or `stdio:` / `stdio:<command>`
    (MCP over stdio); when neither it nor $SESSION_BUDDY_SERVER_URL is set, events go
    straight into the store named by `database_url` (else the environment, else the
    embedded default).
    """

    def __init__(
        self,
        component_name: str,
        shell_type: str | None = None,
        server_url: str | None = None,
        database_url: str | None = None,
        *,
        token: str | None = None,
        heartbeat_interval: float | None = None,
        spool: Spool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        metadata: dict[str, Any] | None = None,
        transport: Transport | None = None,
    ) -> None:
        settings = Settings.from_environment()
        self.component_name = component_name
        self.shell_type = shell_type or "PythonShell"
        self.server_url = server_url or settings.server_url
        self.database_url = database_url
        # While the session runs, a thread says it is alive (an idle REPL too); 0: never.
        self.heartbeat_interval = (
            settings.heartbeat if heartbeat_interval is None else heartbeat_interval
        )
        self.metadata = metadata or {}
        self.session_id: str | None = None
        self.start_event: dict[str, Any] | None = None
        self._token = token or settings.token
        self._timeout = timeout
        self._transport = transport
        self._spool = spool or Spool(settings.spool_path)
        self._courier: Courier | None = None
        self._lock = threading.RLock()
        self._ended = False
        self._exit: tuple[int, str] = (0, "exit")
        self._starter: threading.Thread | None = None
        self._stop_heartbeats = threading.Event()
        self._previous_sigterm: SignalHandler = None
        self._previous_excepthook: Any = None

    @property
    def destination(self) -> Destination:
        url = destination_url(self.server_url, self.database_url)
        return Destination(url, token_identity(self._token))

    @property
    def courier(self) -> Courier:
        with self._lock:
            if self._courier is None:
                transport = self._transport or open_transport(
                    self.server_url, self.database_url, token=self._token, timeout=self._timeout
                )
                self._courier = Courier(transport, self._spool, self.destination, token=self._token)
            return self._courier

    # -- synchronous API -------------------------------------------------------------

    def start_sync(self) -> str | None:
        """Record the start (replaying spooled events first); the session id, or None
        when the start was spooled for later."""
        with self._lock:
            if self.start_event is not None:
                return self.session_id
            event = self.start_event = start_event(
                self.component_name, self.shell_type, metadata=self.metadata
            )
        try:
            session_id = self.courier.start(event).session_id
        except Exception as exc:  # never into the shell
            print(f"session-buddy: start not recorded: {exc}", file=sys.stderr)
            return None
        with self._lock:
            if not self._ended:  # an end already spooled without the id keeps it that way
                self.session_id = session_id
                if session_id and self.heartbeat_interval:
                    threading.Thread(
                        target=self._beat, name="session-buddy-heartbeat", daemon=True
                    ).start()
        return session_id

    def heartbeat_sync(self) -> bool:
        """Tell the server this session is alive; False if it could not be told."""
        if self.session_id is None or self._ended:
            return False
        try:
            return self.courier.heartbeat(self.session_id, now_iso())
        except Exception:
            return False

    def end_sync(self, exit_code: int | None = 0, exit_reason: str | None = None) -> None:
        """Record the end once (later calls do nothing)."""
        with self._lock:
            if self._ended or self.start_event is None:
                return
            self._ended = True
            self._stop_heartbeats.set()
            event = end_event(self.session_id, exit_code=exit_code, exit_reason=exit_reason)
            try:
                self.courier.end(self.session_id, event, start=self.start_event)
            except Exception as exc:
                print(f"session-buddy: end not recorded: {exc}", file=sys.stderr)
            finally:
                self._close_transport()

    def _close_transport(self) -> None:
        if self._courier is not None:
            with contextlib.suppress(Exception):
                self._courier.transport.close()

    # -- asynchronous API ----------------------------------------------------------

    # asyncio is imported on use: a shell that never awaits should not pay for it.

    async def start(self) -> str | None:
        import asyncio

        return await asyncio.to_thread(self.start_sync)

    async def heartbeat(self) -> bool:
        import asyncio

        return await asyncio.to_thread(self.heartbeat_sync)

    async def end(self, exit_code: int | None = 0, exit_reason: str | None = None) -> None:
        import asyncio

        await asyncio.to_thread(self.end_sync, exit_code, exit_reason)

    # -- context managers ------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end_sync(*_exit_of(exc_type, exc))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.end(*_exit_of(exc_type, exc))

    # -- whole-process installation ----------------------------------------------------

    def install(self) -> Self:
        """Start in the background and record the end on exit, on an uncaught exception
        (as a crash) and on SIGTERM. Returns at once."""
        self._starter = threading.Thread(
            target=self.start_sync, name="session-buddy-start", daemon=True
        )
        self._starter.start()
        atexit.register(self._at_exit)
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def _beat(self) -> None:
        assert self.heartbeat_interval is not None
        while not self._stop_heartbeats.wait(self.heartbeat_interval):
            self.heartbeat_sync()

    def _finish(self, exit_code: int, exit_reason: str) -> None:
        """End within the exit budget, waiting briefly for a start still in flight."""
        deadline = time.monotonic() + EXIT_BUDGET_SECONDS
        if self._starter is not None:
            self._starter.join(timeout=EXIT_BUDGET_SECONDS / 2)
        if self._starter is not None and self._starter.is_alive():
            # The start is stuck; the end goes to the spool with the start event.
            self._courier = Courier(
                _Unreachable(), self._spool, self.destination, token=self._token
            )
            if self.start_event is None:
                return
        if self._courier is not None:
            remaining = max(0.1, deadline - time.monotonic())
            transport = self._courier.transport
            transport.timeout = min(transport.timeout, remaining)
        self.end_sync(exit_code, exit_reason)

    def _at_exit(self) -> None:
        self._finish(*self._exit)

    def _excepthook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        self._exit = _exit_of(exc_type, exc)
        hook = self._previous_excepthook or sys.__excepthook__
        hook(exc_type, exc, tb)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._finish(128 + signum, "signal:SIGTERM")
        previous = self._previous_sigterm
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


class _Unreachable:
    """A transport for when the real one is stuck: everything goes to the spool."""

    timeout = 0.0

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        raise TransportError("giving up on a stuck transport at exit")

    def close(self) -> None:
        pass


# Characters of an exception's message its session's end reason keeps (one line).
EXCEPTION_SHOWN = 120


def _exit_of(exc_type: type[BaseException] | None, exc: BaseException | None) -> tuple[int, str]:
    """Exit code and reason for leaving with this exception (or none)."""
    if exc_type is None:
        return 0, "exit"
    if issubclass(exc_type, SystemExit):
        code = exc.code if isinstance(exc, SystemExit) else 0
        if code is None or code == 0:
            return 0, "exit"
        return (code if isinstance(code, int) else 1), "exit"
    if issubclass(exc_type, KeyboardInterrupt):
        return 130, "signal:SIGINT"
    message = " ".join(str(exc).split())[:EXCEPTION_SHOWN] if exc is not None else ""
    return 1, f"exception:{exc_type.__name__}" + (f": {message}" if message else "")
