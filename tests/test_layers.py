"""The layers of src/shared import one way: wiring → domain → delivery → stores → protocol (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1] / "src" / "shared"
# Each layer may import itself and the layers after it in this list, never one before it.
LAYERS = ["wiring", "domain", "delivery", "stores", "observability", "protocol"]


def _layer(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "shared", module
    assert len(parts) > 1, module
    return parts[1]


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared"):
            found.add(node.module if node.module != "shared" else f"shared.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("shared."))
    return found


MODULES = sorted(path for path in SHARED.rglob("*.py") if path.name != "__init__.py")


def test_every_module_sits_in_a_named_layer() -> None:
    for path in MODULES:
        layer = _layer("shared." + ".".join(path.relative_to(SHARED).with_suffix("").parts))
        assert layer in LAYERS, path


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(SHARED)))
def test_imports_run_one_way(path: Path) -> None:
    own = _layer("shared." + ".".join(path.relative_to(SHARED).with_suffix("").parts))
    allowed = set(LAYERS[LAYERS.index(own) :])
    wrong = {module for module in _imports_of(path) if _layer(module) not in allowed}
    assert not wrong, f"{path.relative_to(SHARED)} ({own}) imports {sorted(wrong)}"


def test_the_layer_check_sees_a_wrong_way_import(tmp_path: Path) -> None:
    module = tmp_path / "frames.py"
    module.write_text("from shared.wiring.services import services\n")
    assert _imports_of(module) == {"shared.wiring.services"}
    assert _layer("shared.wiring.services") not in LAYERS[LAYERS.index("protocol") :]


def test_handlers_depend_only_on_shared() -> None:
    for path in (SHARED.parent / "handlers").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith(("roomcast_local", "tests", "bench")), (path, node.module)


# `$default` answers every Socket.IO message, so it performs the three namespaces' actions: their modules, loaded
# with the first Socket.IO message (decision 0050). No other handler reaches into another.
HANDLERS_OF_OTHER_HANDLERS = {"default": {"handlers.analytics", "handlers.conversations", "handlers.notifications"}}


@pytest.mark.parametrize("path", sorted((SHARED.parent / "handlers").glob("*.py")), ids=lambda path: path.stem)
def test_a_handler_imports_no_other_handler(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("handlers"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("handlers"))
    assert imported <= HANDLERS_OF_OTHER_HANDLERS.get(path.stem, set()), f"{path.stem} imports {sorted(imported)}"
