"""The `session-buddy` command line: the `main` group (cli.app) and one module per kind
of command, each registering its commands on `main` when imported."""

from session_buddy.cli import alerts, claude, data, reporting, serving, watch
from session_buddy.cli.app import main

__all__ = ["alerts", "claude", "data", "main", "reporting", "serving", "watch"]
