"""The store itself, in this process (no server), on a private event loop thread.

Opening the store can wait on another process's write lock (SQLite's busy timeout), so it
happens on a daemon thread and every call, the open included, is bounded by `timeout`:
a shell or hook is never held longer, and what did not make it is spooled.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from typing import TYPE_CHECKING, Any

from session_buddy.client.transports.base import DEFAULT_TIMEOUT, TransportError

if TYPE_CHECKING:
    import asyncio

    from session_buddy.app.service import SessionService


class LocalTransport:
    def __init__(self, database_url: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.database_url = database_url
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened: concurrent.futures.Future[SessionService] | None = None
        self._healthy = True  # False once a call overran: closing must not wait on it

    def _open(self) -> concurrent.futures.Future[SessionService]:
        """The service, being opened on a daemon thread beside the loop it runs on."""
        if self._opened is None:
            import asyncio

            opened: concurrent.futures.Future[SessionService] = concurrent.futures.Future()
            loop = self._loop = asyncio.new_event_loop()

            def run() -> None:
                from session_buddy.app.service import SessionService
                from session_buddy.core import SessionLifecycleManager

                try:
                    opened.set_result(SessionService(SessionLifecycleManager(self.database_url)))
                except Exception as exc:
                    opened.set_exception(exc)
                    return
                loop.run_forever()

            threading.Thread(target=run, name="session-buddy-local", daemon=True).start()
            self._opened = opened
        return self._opened

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        import asyncio
        import time

        from session_buddy.app.tools import call_tool

        deadline = time.monotonic() + self.timeout
        try:
            service = self._open().result(self.timeout)
        except concurrent.futures.TimeoutError as exc:
            self._healthy = False
            raise TransportError("the session store did not open in time (locked?)") from exc
        except Exception as exc:
            raise TransportError(f"cannot open the session store: {exc}") from exc
        future = asyncio.run_coroutine_threadsafe(
            call_tool(service, tool, arguments), self._loop_of()
        )
        try:
            result: dict[str, Any] = future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError as exc:
            self._healthy = False
            raise TransportError("the session store did not answer in time") from exc
        return result

    def _loop_of(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise TransportError("the local transport is closed")
        return self._loop

    def close(self) -> None:
        """Close the store (its queued writes commit) unless a call overran: then leave
        it to the daemon threads rather than hold the shell."""
        opened, loop = self._opened, self._loop
        self._opened = self._loop = None
        if opened is None or loop is None or not opened.done() or opened.exception():
            return
        if self._healthy:
            import asyncio

            closing = asyncio.run_coroutine_threadsafe(opened.result().manager.close(), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                closing.result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)
