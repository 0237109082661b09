"""The `session-buddy` command. `hook claude-code` loads neither click nor the rest of the
CLI (Claude Code runs the hook on every event); every other command is the click CLI.

A failure to start (a store that cannot be opened, a port in use, a malformed setting) is
one line on stderr and exit code 2; the traceback only with SESSION_BUDDY_LOG_LEVEL=DEBUG.
The hook always exits 0."""

from __future__ import annotations

import sys

from session_buddy.config import debugging

HOOK = ["hook", "claude-code"]


def main(default: list[str] | None = None) -> None:
    args = sys.argv[1:] or list(default or [])
    if args[:2] == HOOK:
        _hook(args[2:])
        return
    if args[:1] == ["init"] and "-h" not in args and "--help" not in args:
        from session_buddy.client.shell_init import run  # shells run it at every start

        sys.exit(run(args[1:]))
    from session_buddy.cli import main as cli
    from session_buddy.core.errors import SessionBuddyError

    try:
        cli(args=args, prog_name="session-buddy")
    # The store cannot be opened, the port is taken, a setting is malformed, ...
    except (SessionBuddyError, ValueError) as exc:
        if debugging():
            raise
        print(f"session-buddy: {exc}", file=sys.stderr)
        sys.exit(2)


def _hook(options: list[str]) -> None:
    """`hook claude-code`, without loading the command line (Claude Code runs it on every
    event); the command line only explains arguments the hook does not take. Whatever
    happens it exits 0 (Claude Code must never be held up) and says why on stderr."""
    try:
        from session_buddy.client.claude_hook import run

        said = run(options)
        if said is not None:
            print(said, file=sys.stderr)
            return
        from session_buddy.cli import main as cli

        cli(args=[*HOOK, *options], prog_name="session-buddy", standalone_mode=False)
    except Exception as exc:
        print(f"session-buddy hook: {exc}", file=sys.stderr)
