"""The server's part of alerting: find conditions of time, deliver the outbox, and say
once when the store itself fails.

Every second the worker reads the rules and asks core/alerts.py what opens and what
clears (written only when something does), then claims the due outbox rows (one server
per row, by lease) and sends them through their channels in a thread, retrying with
capped backoff. Tracking never waits for any of this: alerts raised by
transitions are rows in the same transaction, and everything else runs beside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random
import time
import uuid
from collections import deque
from typing import Any

from session_buddy.app import channels
from session_buddy.core import alerts
from session_buddy.core.store.base import Store

logger = logging.getLogger("session_buddy.alerts")

EVALUATE_SECONDS = 1.0
TYPICAL_SECONDS = 300.0  # how often each component's p90 is read again
FORGET_SECONDS = 3600.0  # how often old alerts and delivered notices are deleted
LEASE_US = 60_000_000  # a claimed row is another server's to take after this
BACKOFF_CAP_SECONDS = 30.0
STORE_CALM_SECONDS = 10.0  # a failing store is well again after this long without failing
CLAIM = 4  # rows taken at once: sent one after the other, well within the lease
_US = 1_000_000

_SAYS = {
    "waiting": "is waiting for input",
    "failing": "is failing",
    "crashed": "crashed",
    "abandoned": "was abandoned",
    "stuck": "looks stuck",
    "crash-rate": "crashes too often",
}


def notice(
    kind: str, rule_name: str, condition: str, facts: dict[str, Any], link_base: str | None
) -> tuple[str, str]:
    """The title and body of a notice: what, why, where, and a link to the session."""
    subject = facts.get("session_id") or facts.get("component_name") or "?"
    says = _SAYS.get(condition, condition)
    title = f"session-buddy: {subject} {says}"
    if kind == "resolved":
        title = f"session-buddy: resolved: {subject} {says}"
    elif kind == "test":
        title = f"session-buddy: a test of the alert rule {rule_name}"
    lines = [str(facts.get("reason") or says), f"rule: {rule_name}"]
    where = [
        f"{label}: {facts[name]}"
        for label, name in (("component", "component_name"), ("host", "hostname"))
        if facts.get(name)
    ]
    if facts.get("username"):
        where.append(f"user: {facts['username']}")
    lines.append(" · ".join(where))
    if facts.get("cwd"):
        lines.append(f"cwd: {facts['cwd']}")
    if facts.get("status"):
        activity = f" ({facts['activity']})" if facts.get("activity") else ""
        lines.append(f"state: {facts['status']}{activity}")
    if link_base and facts.get("session_id"):
        lines.append(f"{link_base}/sessions/{facts['session_id']}")
    return title, "\n".join(line for line in lines if line)


class RateLimit:
    """At most `per_minute` notices per channel in any minute (per server)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = max(1, per_minute)
        self.sent: dict[str, deque[float]] = {}

    def wait(self, channel: str, now: float) -> float:
        """Seconds until `channel` may take one more notice (0: now, and it is counted)."""
        sent = self.sent.setdefault(channel, deque())
        while sent and sent[0] <= now - 60.0:
            sent.popleft()
        if len(sent) >= self.per_minute:
            return sent[0] + 60.0 - now
        sent.append(now)
        return 0.0


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4 ... capped at
    BACKOFF_CAP_SECONDS, with jitter so that servers do not retry in step."""
    return min(BACKOFF_CAP_SECONDS, 2.0 ** max(0, attempts - 1)) * random.uniform(0.8, 1.0)


class AlertWorker:
    """Runs beside a server; `run` until cancelled."""

    def __init__(
        self,
        store: Store,
        clock: Any,
        *,
        link_base: str | None = None,
        rate_per_minute: int = 20,
    ) -> None:
        self.store = store
        self.clock = clock  # the server's clock, UTC microseconds
        self.link_base = link_base
        self.limit = RateLimit(rate_per_minute)
        self.owner = f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.rules: list[alerts.AlertRule] = []
        self.typical: dict[str, float] = {}
        self._typical_at = self._forgot_at = -1e18
        self.store_trouble: str | None = None  # the store failure told, until it clears
        self._troubled_at = 0.0
        self._failed: Exception | None = None  # why the last tick failed
        self._store_notices: list[tuple[str, str, str, str]] = []  # (channel, title, body, key)

    async def run(self) -> None:
        """Once a second: look for what opens and clears, then deliver what is due. One
        look a second, not a tighter poll, keeps the worker's reads from slowing the
        writes of tracking (measured: benchmarks/bench_alerts.py)."""
        while True:
            try:
                await self.evaluate()
                while await self.deliver() == CLAIM:  # a backlog: keep going
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._failed is None:  # said once per failure, not every second
                    logger.warning("alerts: %s", exc)
                self._failed = exc
                await self._store_failing(f"the store cannot be used: {type(exc).__name__}")
            else:
                self._failed = None
            await asyncio.sleep(EVALUATE_SECONDS)

    async def evaluate(self) -> None:
        """Open the alerts of conditions of time and clear those that no longer hold."""
        await self._store_failing(self.store.failing)
        self.rules = await self.store.read(alerts.rules)
        if not self.rules:
            return
        now = self.clock()
        if any(rule.condition == "stuck" for rule in self.rules) and (
            time.monotonic() - self._typical_at > TYPICAL_SECONDS
        ):
            self.typical = await self.store.read(alerts.typical_durations)
            self._typical_at = time.monotonic()
        rules, typical = self.rules, self.typical
        found = await self.store.read(lambda tx: alerts.assess(tx, rules, now, typical))
        if found.opening or found.clearing:
            await self.store.write(lambda tx: alerts.apply(tx, found, now))
        if time.monotonic() - self._forgot_at > FORGET_SECONDS:
            await self.store.write(lambda tx: alerts.forget_old(tx, now))
            self._forgot_at = time.monotonic()

    async def deliver(self) -> int:
        """Claim what is due and send it; the number claimed."""
        now = self.clock()
        if not self.rules or not await self.store.read(lambda tx: alerts.anything_due(tx, now)):
            return 0
        owner = self.owner
        claimed = await self.store.write(lambda tx: alerts.claim(tx, owner, now, LEASE_US, CLAIM))
        for delivery in claimed:
            await self._deliver_one(delivery)
        return len(claimed)

    async def _deliver_one(self, delivery: alerts.Delivery) -> None:
        wait = self.limit.wait(delivery.channel, time.monotonic())
        if wait > 0:
            due = self.clock() + int(wait * _US)
            await self.store.write(lambda tx: alerts.retry_later(tx, delivery.id, due, None))
            return
        title, body = notice(
            delivery.kind, delivery.rule_name, delivery.condition, delivery.facts, self.link_base
        )
        sent = await asyncio.to_thread(channels.send, delivery.channel, title, body, delivery.key)
        if sent.ok:
            delivered_us = self.clock()
            await self.store.write(lambda tx: alerts.delivered(tx, delivery.id, delivered_us))
            logger.info("alert %s delivered to %s", delivery.key, sent.channel)
            return
        pause = backoff(delivery.attempts + 1)
        due = self.clock() + int(pause * _US)
        await self.store.write(lambda tx: alerts.retry_later(tx, delivery.id, due, sent.error))
        logger.warning(
            "alert %s not delivered to %s (attempt %d): %s; next try in %.0f s",
            delivery.key,
            sent.channel,
            delivery.attempts + 1,
            sent.error,
            pause,
        )

    async def _store_failing(self, trouble: str | None) -> None:
        """Tell every channel once when the store starts failing, and once when it has
        been well for STORE_CALM_SECONDS (a store that fails on and off is one failure),
        from memory: the outbox is in the failing store."""
        now = time.monotonic()
        if trouble is not None:
            self._troubled_at = now
            if self.store_trouble is None:
                self.store_trouble = trouble
                self._queue_store_notice("session-buddy: the session store is failing", trouble)
        elif self.store_trouble is not None and now - self._troubled_at >= STORE_CALM_SECONDS:
            self.store_trouble = None
            self._queue_store_notice("session-buddy: the session store works again", "")
        await self._send_store_notices()

    def _queue_store_notice(self, title: str, body: str) -> None:
        key = f"session-buddy-store-{uuid.uuid4().hex[:12]}"
        found = sorted({channel for rule in self.rules for channel in rule.channels})
        self._store_notices += [(channel, title, body, key) for channel in found]
        del self._store_notices[:-100]  # bounded, whatever happens to the channels

    async def _send_store_notices(self) -> None:
        waiting, self._store_notices = self._store_notices, []
        for channel, title, body, key in waiting:
            sent = await asyncio.to_thread(channels.send, channel, title, body, key)
            if not sent.ok:
                self._store_notices.append((channel, title, body, key))
