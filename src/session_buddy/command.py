"""The `session-buddy` command. `hook claude-code` first tries the quick path, which
loads neither click nor the CLI (Claude Code runs the hook on every event); every other
command, and the hook whenever the quick path cannot finish, is the click CLI.

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
    """`hook claude-code`: the quick path, else the CLI's full hook. Whatever happens it
    exits 0 (Claude Code must never be held up) and says why on stderr."""
    try:
        from session_buddy.client.quick_hook import quick_hook

        done = quick_hook(options)
        if isinstance(done, str):
            print(done, file=sys.stderr)
            return
        from session_buddy.cli import main as cli

        cli(args=[*HOOK, *done], prog_name="session-buddy", standalone_mode=False)
    except Exception as exc:
        print(f"session-buddy hook: {exc}", file=sys.stderr)
