"""Running the server: logging to stderr, the periodic reaper, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterable

from session_buddy.app.auth import TokenAuthority
from session_buddy.app.metrics import SessionMetrics
from session_buddy.app.service import SessionService
from session_buddy.config import Settings
from session_buddy.core import SessionLifecycleManager
from session_buddy.mcp.server import build_mcp_server
from session_buddy.web.app import build_http_app

logger = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8678
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InsecureBindError(ValueError):
    """Refusing to serve sessions to the network without a secret."""


def _ignore_signal(signum: int, frame: object) -> None:
    """Placeholder handler while uvicorn owns shutdown."""


def configure_logging(level: str) -> None:
    """Logs go to stderr (stdout belongs to the stdio protocol)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def reap_periodically(manager: SessionLifecycleManager, interval: float) -> None:
    while True:
        try:
            reaped = await manager.reap()
            if reaped:
                logger.info("reaper abandoned %d session(s): %s", len(reaped), ", ".join(reaped))
        except Exception:
            logger.exception("reaper failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[SessionService]:
    """The service with its store open and its reaper running; closes both on exit."""
    manager = SessionLifecycleManager(settings=settings)
    await manager.active_count()  # opens a reader now, not on the first request
    reaper = asyncio.create_task(reap_periodically(manager, settings.reap_interval), name="reaper")
    try:
        yield SessionService(
            manager,
            authority=TokenAuthority.from_secret(settings.secret),
            metrics=SessionMetrics(),
        )
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        await manager.close()  # queued writes commit before the store closes
        logger.info("session store closed")


async def serve_stdio(settings: Settings) -> None:
    """Serve stdio until stdin closes or SIGINT/SIGTERM arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    async with running_service(settings) as service:
        serving = asyncio.create_task(build_mcp_server(service).run_stdio_async())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if serving.done():
            serving.result()
    if stop.is_set():
        # The store is closed, every queued write committed. The stdin reader thread
        # cannot be interrupted, so leave without waiting for it.
        logging.shutdown()
        os._exit(0)


async def serve_http(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allowed_hosts: Iterable[str] = (),
    insecure_bind: bool = False,
    stateless: bool = False,
) -> None:
    if not is_loopback(host) and settings.secret is None and not insecure_bind:
        raise InsecureBindError(
            f"refusing to listen on {host} without SESSION_BUDDY_SECRET: anyone on the "
            "network could read and write sessions. Set the secret, or pass --insecure-bind."
        )
    import uvicorn

    async with running_service(settings) as service:
        app = build_http_app(
            service,
            build_mcp_server(service),
            bind_host=host,
            allowed_hosts=allowed_hosts,
            stateless=stateless,
        )
        config = uvicorn.Config(
            app, host=host, port=port, access_log=False, log_config=None, lifespan="on"
        )
        logger.info("session-buddy serving MCP on http://%s:%d/mcp", host, port)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal into
        # the handler it found. Give it a no-op one, so the store still closes after it.
        previous = {sig: signal.signal(sig, _ignore_signal) for sig in _STOP_SIGNALS}
        try:
            await uvicorn.Server(config).serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
