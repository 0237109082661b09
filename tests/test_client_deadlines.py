"""The hook, `emit` and the spool against servers that are sick rather than absent
(issue 21, client side): one deadline for a whole exchange, replies read by their framing
up to a cap, delivered only when a reply says so, retries that are the same event, one
spelling of a server URL, and a spool that survives its own damage, a full disk, old
records and two flushes at once. The figures in comments are the review's, before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_helpers import free_port, http_server, run_cli, server_env, spooled
from session_buddy.client.spool import PENDING, QUARANTINED, REJECTED, Destination, Spool
from session_buddy.core import SessionLifecycleManager
from sick_peers import delaying_proxy, endless, scripted_server, sends, trickles

CLAUDE = "0b9d7e64-2a51-4c3f-8e0d-6a7b5c4d3e21"
START = {"session_id": CLAUDE, "hook_event_name": "SessionStart", "source": "startup"}
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
OUTCOME = b"Session-Buddy-Outcome: tracked claude-code-x for Claude session y\r\n"
MEG = b"x" * 65536
CHUNK = b"10000\r\n" + MEG + b"\r\n"


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    return server_env(database, **({"SESSION_BUDDY_SPOOL": str(tmp_path / "spool.db")} | extra))


def run(
    tmp_path: Path, args: list[str], stdin: str = "", **extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`session-buddy ARGS` in a process of its own; (what it did, its wall time)."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy", *args],
        input=stdin,
        env=env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - began


def hook(tmp_path: Path, url: str, payload: dict[str, Any] = START) -> tuple[str, float]:
    done, took = run(tmp_path, ["hook", "claude-code", "--server-url", url], json.dumps(payload))
    assert done.returncode == 0
    return done.stderr, took


@pytest.mark.parametrize(
    ("case", "answer"),
    [
        # 12 of the 500 bytes it announced, then closed
        ("short body", OK + OUTCOME + b"Content-Length: 500\r\n\r\n{}" + b" " * 10),
        # chunked, without the outcome header
        ("no outcome", OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        # the outcome header, and a body that is not JSON
        ("garbage body", OK + OUTCOME + b"Content-Length: 9\r\n\r\nnot json!"),
        # a 400 whose body is a JSON list
        ("400 with a list", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n[]"),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.2\r\n"),
    ],
)
def test_the_hook_takes_only_a_reply_that_confirms(
    tmp_path: Path, case: str, answer: bytes
) -> None:
    """A 200 that lies loses nothing: the start is spooled, and the hook says so."""
    with scripted_server(sends(answer)) as url:
        said, _ = hook(tmp_path, url)
    assert "tracked" not in said and "Traceback" not in said, said
    assert "spooled the start for later" in said, said
    [record] = spooled(tmp_path / "spool.db")
    assert record["payload"]["hook_event_name"] == "SessionStart"
    assert record["destination"] == url


@pytest.mark.parametrize(
    ("case", "script"),
    [
        # before: 32.9 s, 173 MB RSS and 81,788,959 bytes written to stderr
        ("endless body", endless(OK + OUTCOME + b"Content-Length: 999999999999\r\n\r\n", MEG)),
        ("endless chunks", endless(OK + b"Transfer-Encoding: chunked\r\n\r\n", CHUNK)),
        ("endless header", endless(OK, b"X-Padding: " + b"y" * 1000 + b"\r\n")),
        # before: the hook held 15.2 s
        ("one byte every 50 ms", trickles(OK + OUTCOME + b"Content-Length: 2\r\n\r\n{}", 0.05)),
    ],
)  # fmt: skip
def test_a_server_that_never_finishes_cannot_hold_or_flood_the_hook(
    tmp_path: Path, case: str, script: Any
) -> None:
    with scripted_server(script) as url:
        said, took = hook(tmp_path, url)
    assert took < 3.0, f"{case}: the hook took {took:.1f} s (its budget is 1 s)"
    assert len(said) < 2000, f"{case}: {len(said)} characters on stderr"
    assert "spooled the start for later" in said, said
    [record] = spooled(tmp_path / "spool.db")
    assert record["payload"]["hook_event_name"] == "SessionStart"


def test_emit_has_one_deadline_and_a_reply_cap(tmp_path: Path) -> None:
    """Before: `emit` held 15.4 s for a trickling server, and went to 1 GB RSS for a reply
    announcing 500 MB."""
    args = ["emit", "start", "--component", "slow", "--timeout", "0.5"]
    with scripted_server(trickles(OK + b"Content-Length: 2\r\n\r\n{}", 0.05)) as url:
        done, took = run(tmp_path, [*args, "--server-url", url])
    assert took < 3.0, f"emit took {took:.1f} s"
    assert done.stdout.startswith("spooled:"), done.stdout + done.stderr
    huge = OK + b"Content-Length: 500000000\r\n\r\n"
    with scripted_server(endless(huge, b"z" * 65536)) as url:
        measured = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, sys.executable, *args, "--server-url", url],
            env=env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    out, peak_kib = measured.stdout.strip().split("|")
    assert out.startswith("spooled:"), measured.stdout + measured.stderr
    assert int(peak_kib) < 100 * 1024, f"emit peaked at {int(peak_kib) // 1024} MiB"


# Runs a command and prints its stdout and its peak RSS (KiB), separated by "|".
PEAK_RSS = """
import resource, subprocess, sys
command = [sys.argv[1], "-m", "session_buddy", *sys.argv[2:]]
done = subprocess.run(command, capture_output=True, text=True)
print(done.stdout.strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, sep="|")
"""


async def test_an_answer_that_comes_late_is_retried_as_the_same_event(tmp_path: Path) -> None:
    """The server takes the quick path's start but answers after the hook's 0.4 s: the
    hook says so ("sent, unconfirmed") and spools the start; the replay is the same event
    (same time, same event id): a duplicate, never a content conflict."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    port = free_port()
    with http_server(database, port=port), delaying_proxy(port, 0.6) as slow:
        said, _ = hook(tmp_path, f"http://127.0.0.1:{slow}/mcp")
        assert said.startswith("sent, unconfirmed ("), said
        assert "spooled the start for later" in said, said
        # The spool delivers where the event was meant to go: the slow way, given time.
        later = ["spool", "flush", "--server-url", f"http://127.0.0.1:{slow}/mcp", "--timeout", "5"]
        flushed, _ = run(tmp_path, later)
        assert flushed.returncode == 0, flushed.stderr
    async with SessionLifecycleManager(database) as manager:
        [session] = (await manager.list_sessions())["sessions"]
        log = await manager.session_events(session["session_id"])
    assert [e["outcome"] for e in log] == ["tracked", "duplicate"]
    assert log[0]["payload"]["timestamp"] == log[1]["payload"]["timestamp"]


def test_one_spelling_of_a_server_url_on_every_path(tmp_path: Path) -> None:
    """`…/mcp/` (and upper case, and no path) name the same server for the hook, `emit`
    and `spool flush`; before, `emit` got a 307 and kept its events spooled forever."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    port = free_port()
    with http_server(database, port=port):
        for url in (f"http://127.0.0.1:{port}/mcp/", f"HTTP://127.0.0.1:{port}"):
            done, _ = run(tmp_path, ["emit", "start", "--component", "slash", "--server-url", url])
            assert done.returncode == 0 and done.stdout.startswith("slash-"), done.stderr
            said, _ = hook(tmp_path, url)
            assert "tracked" in said or "repeated" in said or "claude-code-" in said, said
        assert spooled(tmp_path / "spool.db") == []


def truncated(spool: Path) -> None:
    os.truncate(spool, spool.stat().st_size // 2)


def pages_overwritten(spool: Path) -> None:
    with open(spool, "r+b") as damaged:
        for page in range(2, spool.stat().st_size // 4096, 2):
            damaged.seek(page * 4096)
            damaged.write(b"\xde\xad\xbe\xef" * 1024)


@pytest.mark.parametrize("damage", [truncated, pages_overwritten])
def test_a_damaged_spool_is_set_aside_and_a_new_one_keeps_working(
    tmp_path: Path, damage: Any
) -> None:
    """Before: a corrupted spool.db lost every later event while the server was down,
    stranded the records already in it, and `spool list` and `flush` printed tracebacks."""
    port = free_port()
    down = f"http://127.0.0.1:{port}/mcp"
    for number in range(30):
        args = ["emit", "start", "--component", f"c{number}", "--server-url", down]
        done, _ = run(tmp_path, args)
        assert done.stdout.startswith("spooled:")
    spool = tmp_path / "spool.db"
    damage(spool)
    args = ["emit", "start", "--component", "after", "--server-url", down]
    done, _ = run(tmp_path, args)
    assert done.stdout.startswith("spooled:"), done.stdout + done.stderr
    assert "was damaged" in done.stderr and "Traceback" not in done.stderr, done.stderr
    aside = list(tmp_path.glob("spool.db.damaged-*"))
    assert len([p for p in aside if not p.name.endswith(("-wal", "-shm"))]) == 1
    again, _ = run(tmp_path, ["emit", "start", "--component", "later", "--server-url", down])
    assert again.stdout.startswith("spooled:") and again.stderr == ""  # said once
    listed, _ = run(tmp_path, ["spool", "list"])
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    kept = spooled(spool)
    assert [k["event"]["component_name"] for k in kept[-2:]] == ["after", "later"]
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    with http_server(database, port=port):
        flushed, _ = run(tmp_path, ["spool", "flush"])
    assert flushed.returncode == 0, flushed.stderr
    assert f"delivered {len(kept)}," in flushed.stdout, flushed.stdout
    assert spooled(spool) == []
    print(f"{damage.__name__}: {len(kept) - 2} of 30 earlier records salvaged")


def test_a_flush_drains_a_spool_on_a_full_disk(tmp_path: Path) -> None:
    """Before: taking the lease needed a write, so a full disk stopped `spool flush`."""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)])
    if mounted.returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        spool = str(disk / "spool.db")
        down = f"http://127.0.0.1:{free_port()}/mcp"
        for number in range(20):
            done, _ = run(
                tmp_path,
                ["emit", "start", "--component", f"c{number}", "--server-url", down],
                SESSION_BUDDY_SPOOL=spool,
            )
            assert done.stdout.startswith("spooled:")
        filler = disk / "filler"
        with open(filler, "wb") as fill, pytest.raises(OSError):
            while True:
                fill.write(b"\0" * 65536)
                fill.flush()
        database = f"sqlite:///{tmp_path / 'sessions.db'}"
        with http_server(database, port=int(down.rsplit(":", 1)[1].split("/")[0])):
            flushed, _ = run(tmp_path, ["spool", "flush"], SESSION_BUDDY_SPOOL=spool)
            assert flushed.returncode == 0, flushed.stderr
            assert "delivered 20," in flushed.stdout, flushed.stdout
            filler.unlink()  # room again: the next flush sends them again, harmlessly
            again, _ = run(tmp_path, ["spool", "flush"], SESSION_BUDDY_SPOOL=spool)
            assert again.returncode == 0, again.stderr
        assert spooled(Path(spool)) == []
        listed = run_cli(database, "sessions", "list", "--json").stdout
        assert len(json.loads(listed)["sessions"]) == 20  # each start once
    finally:
        subprocess.run(["umount", str(disk)])


def test_an_old_unreadable_line_does_not_stop_a_plain_flush(tmp_path: Path) -> None:
    """Before: one quarantined line of an old spool.jsonl made plain `spool flush` fail
    ("Invalid server URL 'legacy:spool.jsonl'"), so sqlite:/// destinations never went."""
    (tmp_path / "spool.jsonl").write_text("this is not a record\n")
    database = f"sqlite:///{tmp_path / 'local.db'}"
    spool = Spool(tmp_path / "spool.db", max_pending=10)
    event = {"kind": "start", "event": start_event("local-one")}
    spool.enqueue(Destination(database), event, "kept for the test")
    spool.close()
    flushed, _ = run(tmp_path, ["spool", "flush"])
    assert flushed.returncode == 0, flushed.stderr
    assert f"{database}: delivered 1," in flushed.stdout
    listed = run_cli(database, "sessions", "list", "--json").stdout
    assert [s["component_name"] for s in json.loads(listed)["sessions"]] == ["local-one"]
    [old] = Spool(tmp_path / "spool.db", max_pending=10).listing((QUARANTINED,))
    assert old.body == "this is not a record"


def test_a_lease_belongs_to_one_flush_not_one_process(tmp_path: Path) -> None:
    """Before: two threads of one process both held a destination's lease."""
    spool = Spool(tmp_path / "spool.db", max_pending=10)
    held, inside = threading.Event(), threading.Event()
    answers: list[bool] = []

    def first() -> None:
        with spool.lease("http://x/mcp") as mine:
            answers.append(mine)
            held.set()
            inside.wait(10)

    holder = threading.Thread(target=first)
    holder.start()
    held.wait(10)
    with Spool(tmp_path / "spool.db", max_pending=10).lease("http://x/mcp") as mine:
        answers.append(mine)
    inside.set()
    holder.join()
    with spool.lease("http://x/mcp") as mine:  # free again once the first flush ended
        answers.append(mine)
    assert answers == [True, False, True]


def test_records_set_aside_are_bounded(tmp_path: Path) -> None:
    """Before: with SESSION_BUDDY_SPOOL_MAX=3, 8 refused records were all kept."""
    database = f"sqlite:///{tmp_path / 'sessions.db'}"
    for number in range(8):
        done, _ = run(
            tmp_path,
            [
                "emit",
                "end",
                "--session-id",
                f"nobody-2026010{number}-000000",
                "--database-url",
                database,
            ],
            SESSION_BUDDY_SPOOL_MAX="3",
        )
        assert done.returncode != 0  # refused: an end for a session the store does not know
    kept = Spool(tmp_path / "spool.db", max_pending=3).listing((REJECTED,))
    assert [k.record()["session_id"] for k in kept if k.record()] == [  # type: ignore[index]
        f"nobody-2026010{number}-000000" for number in (5, 6, 7)
    ]
    assert Spool(tmp_path / "spool.db", max_pending=3).listing((PENDING,)) == []


def start_event(component: str) -> dict[str, Any]:
    from session_buddy.client.events import start_event as built

    return built(component, "Script", pid=os.getpid())


def test_emit_keeps_an_event_whose_reply_says_nothing(tmp_path: Path) -> None:
    """A JSON-RPC reply with an empty result does not say the event was taken: it is
    spooled to be sent again, not refused for good."""
    body = b'{"jsonrpc":"2.0","id":1,"result":{}}'
    answer = OK + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    with scripted_server(sends(answer)) as url:
        done, _ = run(tmp_path, ["emit", "start", "--component", "mute", "--server-url", url])
    assert done.stdout.startswith("spooled:"), done.stdout + done.stderr
    assert [r["kind"] for r in spooled(tmp_path / "spool.db")] == ["start"]
    assert spooled(tmp_path / "spool.db", REJECTED) == []
