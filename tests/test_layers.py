"""The layers point down only (ARCHITECTURE.md), checked on the source's own imports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "session_buddy"

# The wire models and the shared leaves beneath them and core: no I/O, no session-buddy
# module above them.
PURE_WIRE = {"session_buddy.mcp.event_models", "session_buddy.timestamps", "session_buddy.lazy"}
# What each layer may import from session-buddy (besides itself). Faces: mcp (but the
# wire models), web, cli, runner, client.
ALLOWED = {
    "session_buddy.timestamps": set(),
    "session_buddy.amounts": {"session_buddy.timestamps"},
    "session_buddy.config": set(),
    "session_buddy.processes": set(),
    "session_buddy.lazy": set(),
    "session_buddy.wire": set(),
    "session_buddy.mcp.event_models": {"session_buddy.timestamps"},
    "session_buddy.core": {
        "session_buddy.lazy",
        "session_buddy.timestamps",
        "session_buddy.config",
        "session_buddy.processes",
    },
    "session_buddy.app": {
        "session_buddy.core",
        "session_buddy.mcp.event_models",
        "session_buddy.timestamps",
        "session_buddy.config",
        "session_buddy.wire",
    },
}
THIRD_PARTY_OF_WIRE = {"pydantic"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module the file imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str | None:
    """The entry of ALLOWED a module belongs to (the longest matching prefix)."""
    matches = [layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len, default=None)


def is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def back_edges(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = module_name(path, package.parent)
        layer = layer_of(source)
        if layer is None:
            continue  # a face: may use anything below it
        allowed = ALLOWED[layer]
        for target in sorted(imports_of(path)):
            if not is_within(target, "session_buddy") or target == "session_buddy":
                continue
            if is_within(target, layer) or any(is_within(target, a) for a in allowed):
                continue
            if target.rsplit(".", 1)[0] == "session_buddy" and target.endswith("__version__"):
                continue
            problems.append(f"{source} imports {target}")
    return problems


def test_no_layer_imports_upwards() -> None:
    assert back_edges() == []


def test_the_check_finds_a_back_edge(tmp_path: Path) -> None:
    copy = tmp_path / "session_buddy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "planted.py").write_text(
        "def later() -> None:\n    from session_buddy.mcp.event_models import SessionStartEvent\n"
    )
    assert back_edges(copy) == [
        "session_buddy.core.planted imports session_buddy.mcp.event_models",
        "session_buddy.core.planted imports session_buddy.mcp.event_models.SessionStartEvent",
    ]


@pytest.mark.parametrize("module", sorted(PURE_WIRE))
def test_pure_wire_modules_import_only_pydantic_stdlib_and_each_other(module: str) -> None:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    for target in imports_of(path):
        top = target.split(".")[0]
        if top == "session_buddy":
            assert any(is_within(target, pure) for pure in PURE_WIRE), target
        else:
            assert top in sys.stdlib_module_names or top in THIRD_PARTY_OF_WIRE, target


def test_the_wire_models_load_without_any_io_library() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import session_buddy.mcp.event_models, sys; print(sorted(m for m in sys.modules "
            "if m.startswith(('sqlite3','prometheus_client','psycopg','mcp.server'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_the_seed_import_paths_still_work() -> None:
    from session_buddy.core import SessionLifecycleManager
    from session_buddy.mcp import SessionTracker
    from session_buddy.mcp.event_models import ErrorResponse

    assert SessionTracker.__module__ == "session_buddy.mcp.session_tracker"
    assert SessionLifecycleManager.__module__ == "session_buddy.core.lifecycle"
    assert "error_code" in ErrorResponse.model_fields


def test_a_postgres_url_without_the_extra_names_the_extra(tmp_path: Path) -> None:
    """Without psycopg installed, a postgresql:// URL says which extra to install."""
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from session_buddy.core.store import open_store\n"
        "open_store('postgresql://postgres@127.0.0.1:5432/test')\n"
    )
    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert failed.returncode != 0
    assert "pip install 'session-buddy[postgres]'" in failed.stderr


def test_architecture_shows_the_transition_table_the_code_decides_with() -> None:
    from session_buddy.core.rules import table

    shown = (PACKAGE.parents[1] / "ARCHITECTURE.md").read_text()
    for row in table():
        assert "| " + " | ".join(row) + " |" in shown, row
