"""MCP sessions bounded in number and shared fairly, in front of the SDK's MCP app.

The SDK refuses a new session (503) once its limit is reached, so whoever opens the most
sessions first locks everyone else out. Here, when the limit is reached, the session
that matters least makes room: the lowest-ranked (by the credential that opened it:
none < read-only token < write token, never above the newcomer's own), and among
equals the one unused longest. It is ended as a client ends one (DELETE /mcp); its
client, if it comes back, opens a new one. With a secret set, only callers with a
verified bearer header keep sessions (the others are served statelessly), and one token
subject holds at most PER_SUBJECT of them: its own oldest makes room for its next. Only
a request that opens a session (`initialize` without a session id) makes room.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session_buddy.app.auth import CLAIMS_STATE_KEY, credential_rank
from session_buddy.web.middleware import MAX_BODY_BYTES, read_body, refusal, replay

SESSION_HEADER = "mcp-session-id"
PER_SUBJECT = 32


@dataclass
class _Held:
    owner: str
    rank: int
    last_used: float


class FairSessions:
    def __init__(self, app: ASGIApp, *, limit: int, idle_seconds: float, secret_set: bool):
        self.app = app
        self.limit = limit
        self.idle_seconds = idle_seconds
        self.secret_set = secret_set
        self.held: dict[str, _Held] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        claims = (scope.get("state") or {}).get(CLAIMS_STATE_KEY)
        owner = str(claims.get("sub")) if isinstance(claims, dict) else ""
        session_id = Headers(scope=scope).get(SESSION_HEADER)
        if session_id is not None:
            if session_id in self.held:
                self.held[session_id].last_used = now
            status = await _passed(self.app, scope, receive, send)
            if status == 404 or scope["method"] == "DELETE":
                self.held.pop(session_id, None)
            return
        keeps = claims is not None or not self.secret_set  # else served statelessly
        if scope["method"] != "POST" or not keeps:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, MAX_BODY_BYTES) or b""
        standing = credential_rank(claims)
        if _opens_session(body) and not await self._room(scope, owner, standing, now):
            message = "too many open MCP sessions; try again later"
            await refusal(503, "too_many_sessions", message)(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened = Headers(raw=message["headers"]).get(SESSION_HEADER)
                if opened is not None:
                    self.held[opened] = _Held(owner, standing, time.monotonic())
            await send(message)

        await self.app(scope, replay(body, receive), noting)

    async def _room(self, scope: Scope, owner: str, newcomer: int, now: float) -> bool:
        """Make room for a session of `owner`; False when none can be made."""
        self.held = {k: v for k, v in self.held.items() if now - v.last_used < self.idle_seconds}
        if self.secret_set and owner:
            mine = [k for k, v in self.held.items() if v.owner == owner]
            if len(mine) >= PER_SUBJECT:
                await self._end(scope, min(mine, key=lambda k: self.held[k].last_used))
        if len(self.held) < self.limit:
            return True
        candidates = [k for k, v in self.held.items() if v.rank <= newcomer]
        if not candidates:
            return False
        least = min(candidates, key=lambda k: (self.held[k].rank, self.held[k].last_used))
        await self._end(scope, least)
        return True

    async def _end(self, scope: Scope, session_id: str) -> None:
        """End a session as its client would: DELETE /mcp with its id."""
        self.held.pop(session_id, None)
        headers = [
            (b"host", Headers(scope=scope).get("host", "localhost").encode("latin-1")),
            (SESSION_HEADER.encode(), session_id.encode("latin-1")),
        ]
        deleting = dict(scope) | {"method": "DELETE", "headers": headers, "query_string": b""}

        async def nothing_more() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: Message) -> None:
            return None

        await self.app(deleting, nothing_more, discard)


def _opens_session(body: bytes) -> bool:
    """Is this an `initialize` request (alone or in a batch)?"""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    items = message if isinstance(message, list) else [message]
    return any(isinstance(item, dict) and item.get("method") == "initialize" for item in items)


async def _passed(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int | None:
    """Run the request; the status it was answered with."""
    status: int | None = None

    async def watching(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    await app(scope, receive, watching)
    return status
