"""`python -m session_buddy` serves MCP over stdio; with arguments it is the CLI."""

from session_buddy.command import main

if __name__ == "__main__":  # not in a worker process that imports it again (spawn)
    main(default=["serve"])
