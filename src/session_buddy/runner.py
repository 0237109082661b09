"""Running the server: logging to stderr, the periodic reaper, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from session_buddy import __version__
from session_buddy.app.alerting import AlertWorker
from session_buddy.app.auth import TokenAuthority
from session_buddy.app.metrics import COMPONENT_LABELS, SessionMetrics
from session_buddy.app.service import SessionService
from session_buddy.config import Settings, otel_logs_export, without_password
from session_buddy.core import SessionLifecycleManager
from session_buddy.core.errors import SessionBuddyError
from session_buddy.mcp.server import build_mcp_server
from session_buddy.web.app import build_http_app
from session_buddy.web.middleware import valid_prefix

if TYPE_CHECKING:
    from session_buddy.app.otel_export import SessionExporter

logger = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8678
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InsecureBindError(SessionBuddyError):
    """Refusing to serve sessions to the network without a secret."""

    code = "insecure_bind"


def _ignore_signal(signum: int, frame: object) -> None:
    """Placeholder handler while uvicorn owns shutdown."""


class OneLineFormatter(logging.Formatter):
    """Each message on one line: what a client sent (a newline, a NUL, an escape
    sequence) is written out, so no client can forge or hide a log line. Tracebacks
    keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = record.message
        if not text.isprintable():
            record.message = "".join(
                c if c.isprintable() else c.encode("unicode_escape").decode() for c in text
            )
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    """Logs go to stderr (stdout belongs to the stdio protocol)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def reap_periodically(
    manager: SessionLifecycleManager, interval: float, retention: timedelta | None
) -> None:
    """Every `interval`: abandon silent and gone sessions; with a `retention`, prune
    finished sessions quiet for longer than that."""
    while True:
        try:
            reaped, report = await manager.upkeep(retention)
            if reaped:
                logger.info("reaper abandoned %d session(s): %s", len(reaped), ", ".join(reaped))
            if report is not None and (report.sessions or report.events):
                logger.info(
                    "retention pruned %d session(s) and %d event(s) in %d batch(es)",
                    report.sessions,
                    report.events,
                    report.batches,
                )
        except Exception:
            logger.exception("reaper failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, link_base: str | None = None
) -> AsyncIterator[SessionService]:
    """The service with its store open, its reaper and its alert worker running; closes
    them all on exit. `link_base`: the dashboard's address, for links in alerts."""
    check_secret(settings.secret)
    exporter = session_exporter()  # before the store opens: a refusal leaves nothing open
    manager = SessionLifecycleManager(settings=settings)
    manager.on_transitions = exporter
    frequent = await manager.most_frequent_components(COMPONENT_LABELS)  # opens a reader now
    reaper = asyncio.create_task(
        reap_periodically(manager, settings.reap_interval, settings.retention), name="reaper"
    )
    worker = AlertWorker(
        manager.store,
        manager.clock,
        link_base=settings.public_url or link_base,
        rate_per_minute=settings.alert_rate,
    )
    alerting = asyncio.create_task(worker.run(), name="alerts")
    service = SessionService(
        manager,
        authority=TokenAuthority.from_secret(settings.secret),
        metrics=SessionMetrics(frequent),
    )
    # What start-up built (modules, models, the service) lives as long as the server:
    # keep the collector from walking it again at every full collection. A request that
    # reads many rows triggers those (a 30-day dashboard page spent ~50 ms in them).
    gc.freeze()
    try:
        yield service
    finally:
        for task in (reaper, alerting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await manager.close()  # queued writes commit before the store closes
        logger.info("session store closed")
        if exporter is not None:
            await asyncio.to_thread(exporter.shutdown)


SECRET_MIN_BYTES = 32  # HS256 keys shorter than its hash are guessable offline


class WeakSecretError(SessionBuddyError):
    """Refusing to sign tokens with a secret that could be guessed."""

    code = "weak_secret"


def check_secret(secret: str | None) -> None:
    """A server refuses a secret too short to sign tokens safely."""
    if secret is not None and len(secret.encode()) < SECRET_MIN_BYTES:
        raise WeakSecretError(
            f"SESSION_BUDDY_SECRET is {len(secret.encode())} bytes: use at least "
            f"{SECRET_MIN_BYTES} (python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )


def session_exporter() -> SessionExporter | None:
    """The OpenTelemetry export of sessions, when OpenTelemetry's variables ask for one."""
    if not otel_logs_export():
        return None
    from session_buddy.app.otel_export import SessionExporter

    exporter = SessionExporter()
    logger.info("sending sessions as OpenTelemetry logs (OTLP over http/protobuf)")
    return exporter


STDIO_BANNER = (
    "session-buddy {version}: an MCP server on stdin/stdout, for an MCP client to start "
    "(it is waiting for one now).\n"
    "  database: {database}\n"
    '  client configuration: {{"command": "session-buddy", "args": ["serve"]}}\n'
    "  for HTTP instead: session-buddy serve --http    (Ctrl+C stops)"
)


async def serve_stdio(settings: Settings) -> None:
    """Serve stdio until stdin closes or SIGINT/SIGTERM arrives; a person at a terminal
    is told what this is."""
    if sys.stderr.isatty():
        database = without_password(settings.database_url)
        print(STDIO_BANNER.format(version=__version__, database=database), file=sys.stderr)
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


class CannotServe(SessionBuddyError):
    """The server cannot start listening (the port is taken, the address not ours)."""

    code = "cannot_serve"


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says "serving"."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so (else
    # Nagle's algorithm adds ~40 ms to every small answer).
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as exc:
        listening.close()
        raise CannotServe(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    listening.setblocking(False)
    return listening


async def serve_http(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allowed_hosts: Iterable[str] = (),
    insecure_bind: bool = False,
    stateless: bool = False,
    root_path: str = "",
    trusted_proxies: Iterable[str] = (),
) -> None:
    valid_prefix(root_path)  # a malformed one is refused before anything starts
    if not is_loopback(host) and settings.secret is None and not insecure_bind:
        raise InsecureBindError(
            f"refusing to listen on {host} without SESSION_BUDDY_SECRET: anyone on the "
            "network could read and write sessions. Set the secret, or pass --insecure-bind."
        )
    import uvicorn

    from session_buddy.web.connections import (
        KEEP_ALIVE_TIMEOUT,
        MAX_HEADER_BYTES,
        BoundedH11Protocol,
    )

    listening = bind(host, port)
    port = listening.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    link_base = None if host in ("0.0.0.0", "::") else f"http://{shown}:{port}"
    try:
        async with running_service(settings, link_base) as service:
            app = build_http_app(
                service,
                build_mcp_server(service),
                bind_host=host,
                allowed_hosts=allowed_hosts,
                stateless=stateless,
                root_path=root_path,
                trusted_proxies=trusted_proxies,
            )
            config = uvicorn.Config(
                app,
                host=host,
                port=port,
                access_log=False,
                log_config=None,
                lifespan="on",
                http=BoundedH11Protocol,
                timeout_keep_alive=int(KEEP_ALIVE_TIMEOUT),
                h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            )
            base = f"http://{shown}:{port}{valid_prefix(root_path)}"
            logger.info(
                "session-buddy serving MCP on %s/mcp, the dashboard on %s/, %s; database %s",
                base,
                base,
                "auth on: a token is needed" if settings.secret else "auth off",
                without_password(settings.database_url),
            )
            # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
            # into the handler it found. Give it a no-op one, so the store still closes.
            previous = {sig: signal.signal(sig, _ignore_signal) for sig in _STOP_SIGNALS}
            try:
                await uvicorn.Server(config).serve(sockets=[listening])
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    finally:
        listening.close()
