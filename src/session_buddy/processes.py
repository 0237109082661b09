"""Is the process behind a session on this host still the one that started it?

Standard library only, and light (no pathlib): core's reaper and the client's spool
leases both ask, and the Claude Code hook finds its launcher here on every call.
"""

from __future__ import annotations

import os

# /proc start times have clock-tick resolution and boot time whole seconds.
_START_TIME_SLACK_US = 2_000_000


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


_BOOT_TIME: list[int | None] = []  # read once (not functools.cache: the hook loads this)


def _boot_time_s() -> int | None:
    if not _BOOT_TIME:
        _BOOT_TIME.append(_read_boot_time_s())
    return _BOOT_TIME[0]


def _read_boot_time_s() -> int | None:
    try:
        for line in _read("/proc/stat").splitlines():
            if line.startswith(b"btime "):
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
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # Field 22 (starttime), counted after the parenthesised command name.
    fields = stat[stat.rindex(b")") + 2 :].split()
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


def _exited(pid: int) -> bool:
    """Has the process exited, as a zombie its parent has not waited for yet ('Z') or one
    being torn down ('X')? Only /proc tells; elsewhere a zombie counts as running."""
    try:
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"Z", b"X")


def why_gone(pid: int, session_started_us: int) -> str | None:
    """'process_gone' or 'pid_reused' when the session's process is no more (a zombie
    is no more), else None."""
    if not pid_exists(pid) or _exited(pid):
        return "process_gone"
    created = process_started_us(pid)
    if created is not None and created > session_started_us + _START_TIME_SLACK_US:
        return "pid_reused"
    return None


# Shells that Claude Code and others run hook commands with (`sh -c "..."`).
SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "ash", "busybox", "fish"})


def _linux_parent(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of a process, from /proc."""
    try:
        stat = _read(f"/proc/{pid}/stat")
        argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
    except OSError:
        return None
    parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
    return parent, [part.decode(errors="replace") for part in argv if part]


def _ps_parent(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of a process, from `ps` (macOS and other systems without /proc)."""
    import subprocess

    try:
        shown = subprocess.run(
            ["ps", "-o", "ppid=", "-o", "args=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=0.5,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (int(shown[0]), shown[1:]) if shown and shown[0].isdigit() else None


def _runs_a_command_string(argv: list[str]) -> bool:
    """Is this a shell running `-c "..."` (also `-lc`, `-ec`, busybox `sh -c`)?"""
    if not argv:
        return False
    program = os.path.basename(argv[0].lstrip("-"))
    if program == "busybox" and len(argv) > 1:
        program, argv = argv[1], argv[1:]
    options = [arg for arg in argv[1:] if arg.startswith("-") and not arg.startswith("--")]
    return program in SHELLS and any("c" in option for option in options)


def launcher_pid(start: int | None = None) -> int | None:
    """The first ancestor (from `start`, default our parent) that is not a shell running
    a command string: the program that ran the hook. None when that cannot be told."""
    read = _linux_parent if os.path.exists("/proc/self/stat") else _ps_parent
    pid = start if start is not None else os.getppid()
    for _ in range(16):  # wrappers nest a few levels at most
        if pid <= 1:
            return None
        found = read(pid)
        if found is None:
            return None
        parent, argv = found
        if not _runs_a_command_string(argv):
            return pid
        pid = parent
    return None
