"""Shell integration: what `session-buddy init` adds to each prompt and to a shell's start.

- The prompt: bash runs the prompt hook N times in a loop, timed by bash itself, beside
  an empty function (target: p50 <= 5 ms added); also the rare prompt that sends a
  heartbeat (a detached fork), once per interval.
- The start: `bash --norc -i -c exit` with and without `eval "$(session-buddy init
  bash)"`, the time added beside `python -c pass` (target: <= 2 x python -c pass).

    python benchmarks/bench_shell.py [--runs 20] [--prompts 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import wall_times

COMMAND = str(Path(sys.executable).parent / "session-buddy")
# A shell's start and end run detached after it (a Python process each): let them finish
# before the next shell, as a person opening shells does, or they would share the cores.
SETTLE_SECONDS = 1.5


def prompt_cost(env: dict[str, str], prompts: int, due: bool) -> tuple[float, float]:
    """Microseconds per call of the prompt hook, and of an empty function, in one bash."""
    every = "0" if due else "600"
    script = f"""
eval "$({COMMAND} init bash)"
__sb_every={every}
nothing() {{ :; }}
TIMEFORMAT=%R
{{ time (for ((i = 0; i < {prompts}; i++)); do nothing; done) ; }} 2>&1
{{ time (for ((i = 0; i < {prompts}; i++)); do __sb_prompt; done) ; }} 2>&1
"""
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    empty, hook = (float(line) for line in done.stdout.split()[-2:])
    return hook / prompts * 1e6, empty / prompts * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=2000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env |= {
            "SESSION_BUDDY_DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}",
            "XDG_RUNTIME_DIR": folder,
            "HOME": folder,
        }
        hook, empty = prompt_cost(env, options.prompts, due=False)
        due, _ = prompt_cost(env, 50, due=True)
        print(f"prompt hook, {options.prompts} prompts (target: p50 <= 5 ms added)")
        print(f"  not due     {hook:8.1f} µs per prompt (an empty function: {empty:.1f} µs)")
        print(f"  due (forks) {due:8.1f} µs per prompt, once per interval (600 s)")
        python: list[float] = []
        bare: list[float] = []
        hooked: list[float] = []
        init = f'eval "$({COMMAND} init bash)"; exit'
        for _ in range(options.runs):  # interleaved; each shell's sends done before the next
            python += wall_times([sys.executable, "-c", "pass"], env, 1)
            bare += wall_times(["bash", "--norc", "--noprofile", "-i", "-c", "exit"], env, 1)
            hooked += wall_times(["bash", "--norc", "--noprofile", "-i", "-c", init], env, 1)
            time.sleep(SETTLE_SECONDS)
    floor = statistics.median(python)
    added = statistics.median(hooked) - statistics.median(bare)
    print(f"shell start, medians of {options.runs} (target: added <= 2 x python -c pass)")
    print(f"  python -c pass        {floor * 1000:7.1f} ms")
    print(f"  bash -i, no init      {statistics.median(bare) * 1000:7.1f} ms")
    print(f"  bash -i, with init    {statistics.median(hooked) * 1000:7.1f} ms")
    print(f"  added                 {added * 1000:7.1f} ms = {added / floor:.2f} x python -c pass")


if __name__ == "__main__":
    sys.exit(main())
