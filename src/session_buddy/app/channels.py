"""Alert channels: Apprise URLs (ntfy, Slack, Discord, Telegram, e-mail, JSON webhooks,
desktop notifications, ...), checked, masked for people and sent to.

A channel URL holds its secrets (tokens, passwords, a private ntfy topic), so it is
stored as given and shown only masked: the scheme, a server's name when it has one, and
a short fingerprint to tell two channels apart. Nothing here logs a URL; Apprise's own
log lines are captured, and kept only once every part of the URL is blotted out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from session_buddy.core.errors import InvalidArgument

INSTALL_HINT = "alert channels need Apprise: pip install 'session-buddy[alerts]'"
# Schemes whose requests can carry our idempotency key as a header (Apprise's `+Name=`).
_HEADER_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")
_SECRET_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.~%]{2,}")


def _apprise() -> Any:
    try:
        import apprise
    except ImportError as exc:
        raise InvalidArgument("channels", INSTALL_HINT) from exc
    # Our own logger says what failed, without the URL; Apprise's lines reach only the
    # capture in `send`, never the server's log.
    logging.getLogger("apprise").propagate = False
    return apprise


def _shown_host(url: str) -> str | None:
    """A server's name in the URL (example.com, 10.0.0.2, localhost), or None where the
    host part is a token (Telegram's bot token, Discord's webhook id, ...)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    named = host == "localhost" or (
        "." in host and not any(c.isdigit() for c in host.split(".")[-1])
    )
    return host if named else None


def mask(url: str) -> str:
    """A channel as people may see it: `ntfy://ntfy.sh/*** #3f2a`."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    host = _shown_host(url)
    fingerprint = hashlib.sha256(url.encode()).hexdigest()[:4]
    if host is None:
        return f"{scheme}://*** #{fingerprint}"
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    server = f"[{host}]" if ":" in host else host
    shown = f"{'***@' if '@' in url else ''}{server}{f':{port}' if port else ''}"
    return f"{scheme}://{shown}/*** #{fingerprint}"


def scrub(text: str, url: str) -> str:
    """`text` with every part of `url` (its user, password, path, query values) but the
    scheme and the shown host blotted out."""
    keep = {url.split("://", 1)[0], _shown_host(url) or ""}
    for part in sorted(set(_SECRET_PART.findall(url)), key=len, reverse=True):
        if part not in keep and not (part.isdigit() and len(part) <= 5):
            text = text.replace(part, "***")
    return text


def check(urls: list[str]) -> None:
    """Refuse, by position and masked, a URL that Apprise cannot send to."""
    apprise = _apprise()
    for number, url in enumerate(urls, start=1):
        if apprise.Apprise.instantiate(url) is None:
            raise InvalidArgument(
                "channels",
                f"channels #{number} ({mask(url)}) is not a channel Apprise knows: see "
                "https://github.com/caronc/apprise/wiki for the URL of each service",
            )


class Sent(NamedTuple):
    channel: str  # masked
    ok: bool
    error: str | None = None


def _with_key(url: str, key: str) -> str:
    """The URL with the idempotency key as a request header, where the scheme has one."""
    if url.split("://", 1)[0].lower() not in _HEADER_SCHEMES:
        return url
    return f"{url}{'&' if '?' in url else '?'}+Idempotency-Key={key}"


def send(url: str, title: str, body: str, key: str) -> Sent:
    """Send one notice through one channel (blocking: run it in a thread). The body ends
    with the idempotency key, so that any receiver can drop a repeat."""
    try:
        apprise = _apprise()
    except InvalidArgument:
        return Sent(mask(url), False, INSTALL_HINT)
    sender = apprise.Apprise()
    if not sender.add(_with_key(url, key)):
        return Sent(mask(url), False, "not a channel Apprise knows")
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = bool(
            sender.notify(
                title=title, body=f"{body}\n\nkey: {key}", body_format=apprise.NotifyFormat.TEXT
            )
        )
        said = captured.getvalue().strip().splitlines()
    error = None if ok else scrub(said[-1].split(" - ", 2)[-1] if said else "not sent", url)
    return Sent(mask(url), ok, error)
