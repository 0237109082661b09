"""The HTTP face: streamable MCP, health, metrics, behind small ASGI middlewares."""
