"""Retention: deleting finished sessions whose last activity is before a cutoff, with
their event log, in small write transactions so that no writer waits long behind a prune.

A finished session's last activity is its `ended_us` (an abandoned one is dated at its
last activity). Stats of any window after the cutoff are unchanged (a session started
then was active then). Active sessions are never pruned, and the deleting statement
checks the rule again, so a session revived meanwhile stays.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Any

from session_buddy.core import usage
from session_buddy.core.rules import Effect, Event, Facts, decide, state_of
from session_buddy.core.store.base import Store, Tx

TARGET_BATCH_SECONDS = 0.025  # each batch aims here, so that none holds the lock ~50 ms
# Between batches prune leaves the write lock free at least this long, and as long as
# its last batch took: writers (of this process or another) always get their turn.
MIN_PAUSE_SECONDS = 0.005
FIRST_BATCH = 200
MAX_BATCH = 5000


@dataclass
class PruneReport:
    sessions: int = 0
    events: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0
    seconds: float = 0.0
    dry_run: bool = False
    by_status: dict[str, int] = field(default_factory=dict)
    pages_returned: int = 0  # SQLite pages given back to the file system


def count_prunable(tx: Tx, cutoff_us: int) -> dict[str, Any]:
    """What a prune at `cutoff_us` would delete: sessions by state, and events."""
    rows = tx.all(
        f"SELECT status, COUNT(*) AS n FROM sessions WHERE {_QUIET} GROUP BY status",
        (cutoff_us,),
    )
    events = tx.one(
        "SELECT (SELECT COUNT(*) FROM events WHERE session_id IN (SELECT session_id FROM "
        f"sessions WHERE {_QUIET})) + (SELECT COUNT(*) FROM "
        "events WHERE session_id IS NULL AND received_us < $1) AS n",
        (cutoff_us,),
    )
    return {
        "by_status": {row["status"]: int(row["n"]) for row in rows},
        "events": int(events["n"]) if events else 0,
    }


# Finished, and quiet since before the cutoff ($1): the PRUNE rule's guard, in SQL.
_QUIET = "status <> 'active' AND ended_us < $1"


def prune_batch(tx: Tx, cutoff_us: int, limit: int) -> dict[str, Any]:
    """Delete up to `limit` prunable sessions (quiet longest first) and their events;
    then, once none are left, up to `limit` events of no session received before the
    cutoff. Rows another transaction holds (a heartbeat reviving one) are skipped."""
    began = time.perf_counter()
    rows = tx.all(
        f"SELECT session_id, status, end_reason FROM sessions WHERE {_QUIET} "
        f"ORDER BY ended_us LIMIT $2{tx.lock_free_rows}",
        (cutoff_us, limit),
    )
    by_status: dict[str, int] = {}
    events = 0
    quiet = Facts(quiet_before_cutoff=True)
    for row in rows:
        state = state_of(row["status"], row["end_reason"])
        if decide(state, Event.PRUNE, quiet).effect is not Effect.DELETE:
            continue
        if not tx.run(
            f"DELETE FROM sessions WHERE session_id = $2 AND {_QUIET}",
            (cutoff_us, row["session_id"]),
        ):
            continue
        events += tx.run("DELETE FROM events WHERE session_id = $1", (row["session_id"],))
        usage.forget(tx, str(row["session_id"]))
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    if not rows:
        events = tx.run(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE session_id IS NULL "
            "AND received_us < $1 LIMIT $2)",
            (cutoff_us, limit),
        )
        usage.forget_waiting(tx, cutoff_us)
    return {"by_status": by_status, "events": events, "seconds": time.perf_counter() - began}


async def prune(store: Store, cutoff_us: int, *, dry_run: bool = False) -> PruneReport:
    """Prune in batches sized to TARGET_BATCH_SECONDS each (measured inside the
    transaction, as it goes), pausing between them."""
    began = time.perf_counter()
    if dry_run:
        counted = await store.read(lambda tx: count_prunable(tx, cutoff_us))
        return PruneReport(
            sessions=sum(counted["by_status"].values()),
            events=int(counted["events"]),
            dry_run=True,
            by_status=counted["by_status"],
        )
    report = PruneReport()
    limit = FIRST_BATCH
    while True:
        batch = functools.partial(prune_batch, cutoff_us=cutoff_us, limit=limit)
        done = await store.write(batch)
        took = done["seconds"]
        removed = sum(done["by_status"].values())
        if not removed and not done["events"]:
            break
        await asyncio.sleep(max(MIN_PAUSE_SECONDS, took))
        report.batches += 1
        report.longest_batch_ms = max(report.longest_batch_ms, took * 1000)
        report.sessions += removed
        report.events += done["events"]
        for status, count in done["by_status"].items():
            report.by_status[status] = report.by_status.get(status, 0) + count
        scale = TARGET_BATCH_SECONDS / max(took, 1e-4)
        limit = max(10, min(MAX_BATCH, int(limit * min(2.0, max(0.5, scale)))))
    while report.batches:
        returned = await store.write(_give_space_back)
        report.pages_returned += returned
        if not returned:
            break
        await asyncio.sleep(MIN_PAUSE_SECONDS + TARGET_BATCH_SECONDS)
    report.seconds = time.perf_counter() - began
    return report


def _give_space_back(tx: Tx) -> int:
    """SQLite: return freed pages to the file system for up to TARGET_BATCH_SECONDS (files
    made with auto_vacuum INCREMENTAL, as session-buddy makes them); 0 elsewhere. Each
    run of the pragma, as Python's sqlite3 steps it, returns one page."""
    if tx.dialect != "sqlite":
        return 0

    def free() -> int:
        row = tx.one("SELECT freelist_count AS n FROM pragma_freelist_count()")
        return int(row["n"]) if row else 0

    before = free()
    deadline = time.perf_counter() + TARGET_BATCH_SECONDS
    for done in range(before):
        tx.all("PRAGMA incremental_vacuum(1)")
        if done % 16 == 15 and time.perf_counter() > deadline:
            break
    return before - free()
