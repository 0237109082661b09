"""`python -m session_buddy` serves MCP over stdio; with arguments it is the CLI."""

import sys

from session_buddy.cli import main

main(args=sys.argv[1:] or ["serve"], prog_name="session-buddy")
