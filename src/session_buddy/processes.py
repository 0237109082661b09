"""Is the process behind a session on this host still the one that started it?

Standard library only: core's reaper and the client's spool leases both ask.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

# /proc start times have clock-tick resolution and boot time whole seconds.
_START_TIME_SLACK_US = 2_000_000


@cache
def _boot_time_s() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def process_started_us(pid: int) -> int | None:
    """When the process now holding `pid` was created (epoch µs), where /proc tells."""
    boot = _boot_time_s()
    if boot is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime), counted after the parenthesised command name.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[19])
    return boot * 1_000_000 + ticks * 1_000_000 // os.sysconf("SC_CLK_TCK")


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def why_gone(pid: int, session_started_us: int) -> str | None:
    """'process_gone' or 'pid_reused' when the session's process is no more, else None."""
    if not pid_exists(pid):
        return "process_gone"
    created = process_started_us(pid)
    if created is not None and created > session_started_us + _START_TIME_SLACK_US:
        return "pid_reused"
    return None
