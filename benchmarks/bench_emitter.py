"""What the emitter costs a shell: start and exit time with the server up and down.

Each case runs a tiny Python "shell" many times and prints medians of: the whole process
(against a bare `python -c pass` floor from the same run), importing the client,
install() (the start itself runs in the background), and the end recorded at exit.

    python benchmarks/bench_emitter.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHELL = """
import atexit, json, sys, time
t0 = time.perf_counter()
marks = {}
atexit.register(lambda: print(json.dumps(marks | {"end": time.perf_counter() - marks["exit"]})))
from session_buddy.client import SessionEventEmitter
marks["import"] = time.perf_counter() - t0
t1 = time.perf_counter()
emitter = SessionEventEmitter("bench", server_url=sys.argv[1] or None).install()
marks["install"] = time.perf_counter() - t1
atexit.register(lambda: marks.__setitem__("exit", time.perf_counter()))
emitter._starter.join(5)  # a shell does its work meanwhile; settle before exiting
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    began = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - began
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return wall, json.loads(lines[-1]) if lines else {}


def case(label: str, server_url: str, env: dict[str, str], runs: int, floor: float) -> None:
    walls, marks = [], []
    for _ in range(runs):
        wall, mark = run([sys.executable, "-c", SHELL, server_url], env)
        walls.append(wall)
        marks.append(mark)

    def median_ms(key: str) -> float:
        return statistics.median(m[key] for m in marks) * 1000

    wall = statistics.median(walls) * 1000
    print(
        f"{label:<22} process {wall:6.0f} ms (+{wall - floor:4.0f} over bare python) | "
        f"import {median_ms('import'):4.0f} ms | install() {median_ms('install'):5.1f} ms | "
        f"end at exit {median_ms('end'):5.1f} ms"
    )


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-bench-emitter-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env |= {
            "SESSION_BUDDY_DATABASE_URL": f"sqlite:///{folder}/sessions.db",
            "SESSION_BUDDY_SPOOL": str(Path(folder) / "spool.db"),
            "SESSION_BUDDY_LOG_LEVEL": "WARNING",
        }
        floor = (
            statistics.median(run([sys.executable, "-c", "pass"], env)[0] for _ in range(runs))
            * 1000
        )
        print(f"bare python process: {floor:.0f} ms (floor); medians of {runs} runs")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "session_buddy", "serve", "--http", "--port", str(port)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.2)
            while subprocess.run(
                ["curl", "-sf", f"http://127.0.0.1:{port}/healthz"], capture_output=True
            ).returncode:
                time.sleep(0.1)
            case("HTTP, server up", f"http://127.0.0.1:{port}/mcp", env, runs, floor)
        finally:
            server.terminate()
            server.wait()
        case("HTTP, server down", f"http://127.0.0.1:{free_port()}/mcp", env, runs, floor)
        case("local store (no server)", "", env, runs, floor)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    main(parser.parse_args().runs)
