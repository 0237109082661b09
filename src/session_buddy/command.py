"""The `session-buddy` command. `hook claude-code` first tries the quick path, which
loads neither click nor the CLI (Claude Code runs the hook on every event); every other
command, and the hook whenever the quick path cannot finish, is the click CLI.

A failure to start (a store that cannot be opened, a port in use) is one line on stderr
and exit code 2; the traceback only with SESSION_BUDDY_LOG_LEVEL=DEBUG."""

from __future__ import annotations

import sys

HOOK = ["hook", "claude-code"]


def main(default: list[str] | None = None) -> None:
    args = sys.argv[1:] or list(default or [])
    if args[:2] == HOOK:
        from session_buddy.client.quick_hook import quick_hook

        done = quick_hook(args[2:])
        if isinstance(done, str):
            print(done, file=sys.stderr)
            return
        args = [*HOOK, *done]
    from session_buddy.cli import main as cli
    from session_buddy.config import Settings
    from session_buddy.core.errors import SessionBuddyError

    try:
        cli(args=args, prog_name="session-buddy")
    except SessionBuddyError as exc:  # the store cannot be opened, the port is taken, ...
        if Settings.from_environment().log_level == "DEBUG":
            raise
        print(f"session-buddy: {exc}", file=sys.stderr)
        sys.exit(2)
