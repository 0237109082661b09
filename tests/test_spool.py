"""The spool: concurrent shells, torn writes, ordered and resumable replays."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from session_buddy.client.spool import Spool

APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from session_buddy.client.spool import Spool

    spool = Spool(Path(sys.argv[1]))
    for n in range(int(sys.argv[3])):
        spool.append({"writer": sys.argv[2], "n": n, "pad": "x" * 3000})
    """
)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(w), "60"])
        for w in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 240
    for w in range(4):
        assert [r["n"] for r in records if r["writer"] == str(w)] == list(range(60))


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append({"n": 1})
    spool.append({"n": 2})
    with open(spool.path, "ab") as handle:
        handle.write(b'{"n": 3, "half')  # the writer died mid-line
    seen: list[Any] = []
    report = spool.replay(lambda record: seen.append(record["n"]) is None)
    assert seen == [1, 2] and report.delivered == 2 and report.remaining == 0


def test_replay_stops_at_the_first_failure_and_keeps_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    for n in range(5):
        spool.append({"n": n})

    def deliver_until_three(record: dict[str, Any]) -> bool:
        if record["n"] == 3:
            spool.append({"n": 99})  # a shell appends while the replay runs
            return False
        return True

    report = spool.replay(deliver_until_three)
    assert (report.delivered, report.remaining) == (3, 2)
    assert [json.loads(line)["n"] for line in spool.path.read_text().splitlines()] == [3, 4, 99]
    assert spool.pending() == 3
    again: list[int] = []
    spool.replay(lambda record: again.append(record["n"]) is None)
    assert again == [3, 4, 99] and spool.pending() == 0


def test_replay_picks_up_what_a_dead_replayer_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    left = spool.path.with_name("spool.jsonl.replaying-deadbeef")
    left.write_text(json.dumps({"n": 0}) + "\n")
    spool.append({"n": 1})
    seen: list[int] = []
    spool.replay(lambda record: seen.append(record["n"]) is None)
    assert seen == [0, 1] and not left.exists()
