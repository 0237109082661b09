"""Package names that load on first use (PEP 562), so that importing one module of a
package does not load the rest of it.

`typing` is imported for type checkers only (`TYPE_CHECKING = False` below, which mypy
reads as true): it costs a Claude Code hook ~10 ms to import, on every event. The
modules on the hook's path do the same."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


def lazy_names(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports each name from its home module when asked."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib  # on use: importing it costs every hook call

        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
