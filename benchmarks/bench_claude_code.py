"""Real Claude Code, `claude -p "Say hi"` against the stand-in Messages API
(tests/claude_standin.py): with no hooks; with the hooks `claude-code install` sets,
each running `true` (Claude Code's own cost of a command hook: the floor under any
hook); with the README's default (the local store, through the hook relay, and the same
without the relay); with the README's server setup (`install --server-url URL`) and with
`--http-activity`. Interleaved rounds in one run, so that noise hits every setup alike;
prints each setup's median run and the time it adds to a run without hooks, beside
`python -c pass`.

Then 6 Claude sessions at once on the local store (the slowest run, beside 6 without
hooks), and the longest of 6 hook calls started at once (each a different session).

Usage: python benchmarks/bench_claude_code.py [--rounds 15]
Needs Claude Code (`make claude`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import free_port, http_server, percentile, wall_times

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from claude_standin import (  # noqa: E402
    StandIn,
    claude_binary,
    claude_environment,
    claude_home,
    stand_in_api,
)
from session_buddy.client.claude_settings import EVENTS  # noqa: E402

API_KEY = "sk-ant-stand-in-0123456789abcdefghij"
SESSION_BUDDY = str(Path(sys.executable).with_name("session-buddy"))


def home_for(root: Path, name: str, api: StandIn, *install: str) -> dict[str, str]:
    """A home with Claude Code set up, and `claude-code install *install` run in it
    (no install when `install` is empty); Claude Code's environment for it."""
    home, project = root / name, root / name / "project"
    project.mkdir(parents=True)
    claude_home(home, project, API_KEY)
    env = claude_environment(home, api, API_KEY)
    if install:
        subprocess.run(
            [SESSION_BUDDY, "claude-code", "install", *install],
            env=env,
            check=True,
            capture_output=True,
        )
    return env


def hooks_doing_nothing(root: Path, api: StandIn) -> dict[str, str]:
    """A home whose hooks (the events `install` sets) run `true`: what Claude Code itself
    spends on a command hook, the floor under any hook."""
    env = home_for(root, "true", api)
    hooks = {event: [{"hooks": [{"type": "command", "command": "true"}]}] for event in EVENTS}
    (Path(env["HOME"]) / ".claude" / "settings.json").write_text(json.dumps({"hooks": hooks}))
    return env


def one_run(claude: str, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [claude, "-p", "Say hi"],
        env=env,
        cwd=Path(env["HOME"]) / "project",
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "Hi!" not in done.stdout:
        raise RuntimeError(f"claude -p failed: {done.stdout} {done.stderr}")
    return time.perf_counter() - began


def at_once(claude: str, env: dict[str, str], count: int) -> list[float]:
    """Wall time of each of `count` `claude -p` runs started together."""
    began = time.perf_counter()
    runs = [
        subprocess.Popen(
            [claude, "-p", "Say hi"],
            env=env,
            cwd=Path(env["HOME"]) / "project",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    ended = []
    for run in runs:
        run.wait(60)
        ended.append(time.perf_counter() - began)
    return ended


def hooks_at_once(env: dict[str, str], count: int) -> list[float]:
    """Wall time of each of `count` hook calls (SessionStart of different sessions)
    started together, as `count` Claude sessions starting at once make them."""
    hook = [SESSION_BUDDY, "hook", "claude-code"]
    payloads = [
        json.dumps(
            {
                "session_id": f"bench-{time.time_ns()}-{n}",
                "cwd": "/srv",
                "hook_event_name": "SessionStart",
            }
        )
        for n in range(count)
    ]
    began = time.perf_counter()
    calls = [
        subprocess.Popen(
            hook,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in payloads
    ]
    for call, payload in zip(calls, payloads, strict=True):
        assert call.stdin is not None
        call.stdin.write(payload.encode())
        call.stdin.close()
    ended = []
    for call in calls:
        call.wait(30)
        ended.append(time.perf_counter() - began)
    return ended


def main(rounds: int) -> None:
    claude = claude_binary()
    if claude is None:
        sys.exit("Claude Code is not installed: `make claude`")
    with tempfile.TemporaryDirectory(prefix="sb-bench-claude-") as folder, stand_in_api() as api:
        root = Path(folder)
        port = free_port()
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        server_env["SESSION_BUDDY_DATABASE_URL"] = f"sqlite:///{root / 'server.db'}"
        url = f"http://127.0.0.1:{port}/mcp"
        setups = {
            "no hooks": home_for(root, "none", api),
            "the same hooks running `true`": hooks_doing_nothing(root, api),
            "README default (local store)": home_for(root, "local", api, "--scope", "user"),
            "default, no relay": home_for(root, "direct", api, "--scope", "user")
            | {"SESSION_BUDDY_RELAY_IDLE": "0"},  # each hook writes the store itself
            "server, --http-activity": home_for(
                root, "server", api, "--server-url", url, "--http-activity"
            ),
            "README server setup (--server-url)": home_for(
                root, "commands", api, "--server-url", url
            ),
        }
        floor = percentile(wall_times([sys.executable, "-c", "pass"], dict(os.environ), 30), 0.5)
        with http_server(server_env, port):
            for env in setups.values():
                one_run(claude, env)  # warm: first runs make the stores and caches
            samples: dict[str, list[float]] = {name: [] for name in setups}
            names = list(setups)
            for number in range(rounds):
                for name in names[number % len(names) :] + names[: number % len(names)]:
                    samples[name].append(one_run(claude, setups[name]))
        print(
            f"claude -p 'Say hi', {rounds} interleaved rounds; python -c pass {floor * 1000:.1f} ms"
        )
        bare = percentile(samples["no hooks"], 0.5)
        for name, runs in samples.items():
            median, p90 = percentile(runs, 0.5) * 1000, percentile(runs, 0.9) * 1000
            added = percentile(runs, 0.5) - bare
            extra = f"  adds {added * 1000:+6.1f} ms = {added / floor:+5.1f} x python -c pass"
            print(f"{name:<36}: median {median:6.1f} ms  p90 {p90:6.1f} ms{extra if added else ''}")
        six = {name: [] for name in ("no hooks", "README default (local store)")}
        for _ in range(3):  # interleaved too
            for name, runs in six.items():
                runs.extend(at_once(claude, setups[name], 6))
        slowest = {name: max(runs) for name, runs in six.items()}
        print(
            f"6 sessions at once: slowest run {slowest['no hooks'] * 1000:.0f} ms without hooks, "
            f"{slowest['README default (local store)'] * 1000:.0f} ms with the default hooks"
        )
        hooks = [
            t for _ in range(10) for t in hooks_at_once(setups["README default (local store)"], 6)
        ]
        print(
            f"6 hook calls at once, local store, {len(hooks)} calls: slowest "
            f"{max(hooks) * 1000:.0f} ms, p95 {percentile(hooks, 0.95) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    main(parser.parse_args().rounds)
