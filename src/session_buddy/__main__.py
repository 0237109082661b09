"""`python -m session_buddy` serves MCP over stdio; with arguments it is the CLI."""

from session_buddy.command import main

main(default=["serve"])
