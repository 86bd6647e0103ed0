"""The layers of src/shared import one way: routes → wiring → domain → delivery → stores → protocol, and handlers
import only shared (docs/architecture.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1] / "src" / "shared"
# Each layer may import itself and the layers after it in this list, never one before it.
LAYERS = ["routes", "wiring", "domain", "delivery", "stores", "observability", "protocol"]


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


HANDLERS = sorted(path for path in (SHARED.parent / "handlers").glob("*.py") if path.name != "__init__.py")
# What a handler may import besides shared: the standard library, the packages of layer/requirements.txt (by their
# import names) and the runtime's boto3.
DEPLOYED = {"aws_lambda_powertools", "aiohttp", "pydantic", "jwt", "boto3", "botocore"}


def _top_level_imports(path: Path) -> set[str]:
    """The first part of every absolute module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


@pytest.mark.parametrize("path", HANDLERS, ids=lambda path: path.stem)
def test_a_handler_imports_only_shared_the_standard_library_and_third_party_packages(path: Path) -> None:
    """Handlers are entry points: none imports another (a namespace's actions live in shared.routes), nor the
    local stack, tests or bench."""
    outside = {name for name in _top_level_imports(path) - {"shared", "__future__"} if name not in DEPLOYED}
    assert outside <= set(sys.stdlib_module_names), (
        f"{path.stem} imports {sorted(outside - set(sys.stdlib_module_names))}"
    )


def test_the_handler_check_sees_a_handler_importing_a_handler(tmp_path: Path) -> None:
    module = tmp_path / "default.py"
    module.write_text("def f():\n    from handlers.conversations import conversations\n")
    assert _top_level_imports(module) == {"handlers"}
    assert "handlers" not in DEPLOYED | set(sys.stdlib_module_names)
