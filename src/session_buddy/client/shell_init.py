"""`session-buddy init bash|zsh|fish`: the lines an interactive shell evaluates at start
to be one session: a start in the background, a heartbeat from the prompt (at most one
per interval) and from an idle loop (so that a shell open for days stays active while it
lives), and an end at exit. Nothing waits for session-buddy: every send runs detached
(`setsid`), so the prompt pays an arithmetic test and, once per interval, a fork.

`exit` ends the session cleanly whatever the last command's status (a failed command is
not a crashed shell); a shell that is killed sends nothing and is abandoned, with its
evidence, by the next reap on its host (its pid is the shell's). Loaded without click:
shells run it at every start.
"""

from __future__ import annotations

import os
import sys

SHELLS = ("bash", "zsh", "fish")
DEFAULT_INTERVAL = 600  # seconds between heartbeats ($SESSION_BUDDY_HEARTBEAT)

HERE = os.path.join(os.path.dirname(__file__), "shell")


def _template(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="utf-8") as file:
        return file.read()


def quoted(text: str) -> str:
    """`text` as one word of sh (shlex.quote's rule; shlex itself loads re and enum, a
    third of this command's time at every shell start)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def command_line() -> str:
    """How the shell calls this session-buddy: the absolute path of the command (or the
    interpreter and the module), so that it works without the venv on PATH."""
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) == "session-buddy" and os.access(script, os.X_OK):
        return quoted(script)
    return f"{quoted(sys.executable)} -m session_buddy"


def script(shell: str) -> str:
    """The lines for `shell` to evaluate; ValueError naming the shells known."""
    if shell not in SHELLS:
        raise ValueError(f"no shell integration for {shell!r}: use one of {', '.join(SHELLS)}")
    values = {"shell": shell, "quoted": quoted(command_line()), "interval": DEFAULT_INTERVAL}
    if shell == "fish":
        return _template("init.fish") % values
    interactive = "[[ $- == *i* ]]" if shell == "bash" else "[[ -o interactive ]]"
    hooks = _template(f"{shell}_hooks.sh").rstrip("\n")
    return _template("posix.sh") % (values | {"interactive": interactive, "hooks": hooks})


def run(args: list[str]) -> int:
    """`session-buddy init SHELL`: print the lines; exit 2 with one line when wrong."""
    if len(args) != 1:
        print(f"usage: session-buddy init {{{','.join(SHELLS)}}}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(script(args[0]))
    except ValueError as exc:
        print(f"session-buddy: {exc}", file=sys.stderr)
        return 2
    return 0
