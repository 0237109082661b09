"""The spool queue: concurrent shells, bounds, exact counts, leases, the old file format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from session_buddy.client.spool import (
    LEGACY_DESTINATION,
    PENDING,
    QUARANTINED,
    REJECTED,
    Destination,
    Spool,
    SpoolError,
    SpoolFull,
)

HERE = Destination("http://127.0.0.1:1/mcp", "cli (abc)")
THERE = Destination("sqlite:////tmp/elsewhere.db")

ENQUEUER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from session_buddy.client.spool import Destination, Spool

    spool = Spool(Path(sys.argv[1]), max_pending=100_000)
    for n in range(int(sys.argv[3])):
        record = {"kind": "start", "event": {"event_id": f"{sys.argv[2]}-{n}", "pad": "x" * 3000}}
        spool.enqueue(Destination(f"http://host-{int(sys.argv[2]) % 2}/mcp"), record)
    """
)


def start_record(n: int) -> dict[str, object]:
    return {"kind": "start", "event": {"event_id": f"e-{n}"}}


def test_concurrent_shells_lose_nothing_and_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    writers = [
        subprocess.Popen([sys.executable, "-c", ENQUEUER, str(path), str(w), "60"])
        for w in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    spool = Spool(path, max_pending=100_000)
    records = spool.listing((PENDING,))
    assert len(records) == 240
    for w in range(4):
        mine = [r for r in records if (r.record() or {})["event"]["event_id"].startswith(f"{w}-")]
        assert [(r.record() or {})["event"]["event_id"] for r in mine] == [
            f"{w}-{n}" for n in range(60)
        ]
        assert {r.destination for r in mine} == {f"http://host-{w % 2}/mcp"}
    assert spool.count("http://host-0/mcp") == spool.count("http://host-1/mcp") == 120


def test_counts_stay_exact_per_destination_and_state(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_pending=10)
    ids = [spool.enqueue(HERE, start_record(n)) for n in range(5)]
    spool.enqueue(THERE, start_record(99))
    spool.set_aside(ids[0], REJECTED, "Invalid component_name")
    spool.delivered(ids[1:3])
    assert spool.drop(ids[4]) and not spool.drop(ids[4])
    assert (spool.count(HERE.url), spool.count(HERE.url, REJECTED)) == (1, 1)
    assert spool.count(THERE.url) == 1
    assert [r.id for r in spool.head(HERE.url, 10)] == [ids[3]]
    assert spool.destinations() == sorted([HERE.url, THERE.url])
    [rejected] = spool.listing((REJECTED,))
    assert (rejected.reason, rejected.identity) == ("Invalid component_name", "cli (abc)")


def test_a_full_destination_refuses_the_new_event_and_keeps_the_old(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_pending=3)
    for n in range(3):
        spool.enqueue(HERE, start_record(n))
    with pytest.raises(SpoolFull, match="at most 3"):
        spool.enqueue(HERE, start_record(3))
    spool.enqueue(THERE, start_record(4))  # other destinations have their own bound
    assert [(r.record() or {})["event"]["event_id"] for r in spool.head(HERE.url, 10)] == [
        "e-0",
        "e-1",
        "e-2",
    ]


def test_postponed_records_wait_for_their_backoff(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_pending=10)
    first = spool.enqueue(HERE, start_record(0))
    assert spool.due(HERE.url)
    spool.postpone(first, "connection refused")
    assert not spool.due(HERE.url)
    [waiting] = spool.head(HERE.url, 1)
    assert (waiting.attempts, waiting.reason) == (1, "connection refused")


def test_one_flusher_per_destination_and_a_dead_ones_lease_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from session_buddy.client.spool import Spool
                with Spool(Path({str(path)!r}), max_pending=10).lease({HERE.url!r}) as mine:
                    print(mine, flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
    spool = Spool(path, max_pending=10)
    with spool.lease(HERE.url) as mine:
        assert not mine  # a live process holds it
    with spool.lease(THERE.url) as mine:
        assert mine  # another destination is free
    holder.kill()
    holder.wait()
    with spool.lease(HERE.url) as mine:
        assert mine  # its holder is dead


def test_an_old_spool_file_is_imported_once_and_its_bad_lines_quarantined(
    tmp_path: Path,
) -> None:
    good = [
        {"kind": "start", "event": {"event_id": "a"}},
        {"kind": "end", "session_id": "x-20260101-000000", "event": {}},
    ]
    lines = [
        json.dumps(good[0]).encode(),
        b'{"kind": "start", "ev',  # torn by a writer that died
        json.dumps({"kind": "start"}).encode(),  # JSON, but not a record
        json.dumps(good[1]).encode(),
        b"\xff\xfe not even text",
    ]
    (tmp_path / "spool.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "spool.jsonl.replaying-dead").write_text(
        json.dumps({"kind": "start", "event": {"event_id": "left-by-a-dead-replay"}}) + "\n"
    )
    spool = Spool(tmp_path / "spool.db", max_pending=10)
    pending = spool.head(LEGACY_DESTINATION, 10)
    assert [r.record() for r in pending] == [
        {"kind": "start", "event": {"event_id": "left-by-a-dead-replay"}},
        *good,
    ]
    quarantined = spool.listing((QUARANTINED,))
    assert len(quarantined) == 3
    assert quarantined[0].body == '{"kind": "start", "ev'
    assert not (tmp_path / "spool.jsonl").exists()
    assert (tmp_path / "spool.jsonl.imported").exists()
    spool.close()
    again = Spool(tmp_path / "spool.db", max_pending=10)
    assert len(again.head(LEGACY_DESTINATION, 10)) == 3  # imported once


def test_an_unusable_spool_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    spool = Spool(blocker / "spool.db", max_pending=10)
    with pytest.raises(SpoolError, match="cannot use the spool"):
        spool.enqueue(HERE, start_record(0))
    assert spool.known_session_id("anything") is None
    assert os.path.isfile(blocker)


def test_a_spool_path_that_names_an_old_spool_file_is_imported(tmp_path: Path) -> None:
    """$SESSION_BUDDY_SPOOL set to the old spool.jsonl: its records are taken in and the
    queue takes its place."""
    old = tmp_path / "my-spool.jsonl"
    old.write_text(json.dumps({"kind": "start", "event": {"event_id": "kept"}}) + "\n")
    spool = Spool(old, max_pending=10)
    [record] = spool.head(LEGACY_DESTINATION, 10)
    assert record.record() == {"kind": "start", "event": {"event_id": "kept"}}
    assert old.read_bytes().startswith(b"SQLite format 3")
    spool.close()
    assert len(Spool(old, max_pending=10).head(LEGACY_DESTINATION, 10)) == 1  # once
