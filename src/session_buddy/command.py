"""The `session-buddy` command. `hook claude-code` first tries the quick path, which
loads neither click nor the CLI (Claude Code runs the hook on every event); every other
command, and the hook whenever the quick path cannot finish, is the click CLI."""

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

    cli(args=args, prog_name="session-buddy")
