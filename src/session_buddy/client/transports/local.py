"""The store itself, in this process (no server), on a private event loop thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from session_buddy.client.transports.base import DEFAULT_TIMEOUT, TransportError

if TYPE_CHECKING:
    import asyncio


class LocalTransport:
    """The store itself, in this process (no server): a private event loop thread."""

    def __init__(self, database_url: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.database_url = database_url
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._service: Any = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio

            from session_buddy.app.service import SessionService
            from session_buddy.core import SessionLifecycleManager

            try:
                manager = SessionLifecycleManager(self.database_url)
            except Exception as exc:
                raise TransportError(f"cannot open the session store: {exc}") from exc
            self._service = SessionService(manager)
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="session-buddy-local", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    def _run(self, make: Callable[[], Coroutine[Any, Any, Any]], timeout: float) -> Any:
        import asyncio

        future = asyncio.run_coroutine_threadsafe(make(), self._ensure())
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            raise TransportError("the session store did not answer in time") from exc
        except Exception as exc:
            raise TransportError(f"the session store failed: {exc}") from exc

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        from session_buddy.app.tools import call_tool

        self._ensure()
        result: dict[str, Any] = self._run(
            lambda: call_tool(self._service, tool, arguments), self.timeout
        )
        return result

    def close(self) -> None:
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        try:
            self._run_on(loop, self._service.manager.close())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=2)

    @staticmethod
    def _run_on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=5)
