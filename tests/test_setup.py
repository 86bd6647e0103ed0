"""`make` on machines other than this one: it takes any Python from 3.11 on PATH (tools/dev-python, newest first)
and installs Node.js and npm from Debian when they are missing, as it installs chromium. Each test runs the
Makefile's own selection under a PATH of its making, without creating a virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make") or "/usr/bin/make"
# What the Makefile and tools/dev-python run besides Python (make runs a simple recipe line without a shell).
TOOLS = ("bash", "sh", "id", "env", "echo", "test")
# This machine's own interpreter (3.11 or newer), outside its virtual environment.
OWN = Path(sys.executable).resolve()


def interpreter(version: str) -> Path | None:
    """A working pythonX.Y of this machine (the system's or pyenv's), to stand for one a distribution ships."""
    candidates = [
        Path(f"/usr/bin/python{version}"),
        *sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}")),
    ]
    for candidate in candidates:
        runs = [str(candidate), "-c", "import ensurepip, venv"]
        if candidate.exists() and subprocess.run(runs, check=False).returncode == 0:  # noqa: S603 - fixed arguments
            return candidate
    return None


def machine(tmp_path: Path, pythons: dict[str, Path | str]) -> Path:
    """A bin directory holding only `pythons` (name -> interpreter, or a script's text) and the shell tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    for name, target in pythons.items():
        if isinstance(target, Path):
            (bin_dir / name).symlink_to(target)
        else:
            (bin_dir / name).write_text(target)
            (bin_dir / name).chmod(0o755)
    return bin_dir


def make(bin_dir: Path, *arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - make on this repository with a PATH of the test's making
        [MAKE, "-s", *arguments], cwd=cwd, capture_output=True, text=True, check=False, env={"PATH": str(bin_dir)}
    )


PYTHON_312 = interpreter("3.12")
PYTHON_311 = interpreter("3.11")
needs_312 = pytest.mark.skipif(PYTHON_312 is None, reason="no Python 3.12 on this machine to stand for one")
# What a pyenv shim does for a version pyenv has not selected.
SHIM = '#!/bin/sh\necho "pyenv: $(basename "$0"): command not found" >&2\nexit 127\n'


@needs_312
def test_a_machine_with_only_python3_12_uses_it(tmp_path: Path) -> None:
    assert PYTHON_312 is not None
    bin_dir = machine(tmp_path, {"python3.12": PYTHON_312})
    assert make(bin_dir, "print-python").stdout.strip() == str(bin_dir / "python3.12")


@needs_312
def test_the_newest_that_runs_comes_first_and_a_shim_that_fails_is_skipped(tmp_path: Path) -> None:
    assert PYTHON_312 is not None
    pythons: dict[str, Path | str] = {"python3.13": SHIM, "python3.12": PYTHON_312, "python3": OWN}
    bin_dir = machine(tmp_path, pythons)
    assert make(bin_dir, "print-python").stdout.strip() == str(bin_dir / "python3.12")


def test_an_unversioned_python3_is_taken_when_it_is_new_enough(tmp_path: Path) -> None:
    bin_dir = machine(tmp_path, {"python3": OWN})
    assert make(bin_dir, "print-python").stdout.strip() == str(bin_dir / "python3")


def test_python_on_the_command_line_wins(tmp_path: Path) -> None:
    bin_dir = machine(tmp_path, {"python3": OWN})
    assert make(bin_dir, "print-python", "PYTHON=/opt/python3.14/bin/python3.14").stdout.strip() == (
        "/opt/python3.14/bin/python3.14"
    )


def test_too_old_a_python_is_refused_by_name_before_anything_is_created(tmp_path: Path) -> None:
    # A real Python 3.10 where this machine has one; else a stand-in that fails the version check as 3.10 would.
    too_old: Path | str = interpreter("3.10") or "#!/bin/sh\nexit 1\n"
    checkout = tmp_path / "clone"
    checkout.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements-dev.txt"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "tools", checkout / "tools")
    # The venv's prerequisites (the Makefile's $(STAMP) rule), so make gets as far as choosing a Python.
    for prerequisite in ("layer/requirements.txt", "emitters/python/pyproject.toml"):
        (checkout / prerequisite).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / prerequisite, checkout / prerequisite)
    bin_dir = machine(tmp_path, {"python3": too_old})
    assert make(bin_dir, "print-python", cwd=checkout).stdout.strip() == ""
    refused = make(bin_dir, ".venv/.installed", cwd=checkout)
    assert refused.returncode != 0
    assert "no Python 3.11 or newer on PATH (tried python3.13, python3.12, python3.11, python3)" in refused.stderr
    assert not (checkout / ".venv").exists()


def test_node_and_npm_are_installed_from_debian_when_missing(tmp_path: Path) -> None:
    bin_dir = machine(tmp_path, {"python3": OWN})
    absent = tmp_path / "usr-bin" / "npm"
    planned = make(bin_dir, "-n", "-W", "package-lock.json", f"SYSTEM_NPM={absent}", "node_modules/.installed")
    assert "apt-get install -y -qq nodejs npm" in planned.stdout
    assert f"{absent} ci --no-audit" in planned.stdout
    # With npm on PATH, that one is used and nothing is installed.
    (bin_dir / "npm").write_text("#!/bin/sh\n")
    (bin_dir / "npm").chmod(0o755)
    planned = make(bin_dir, "-n", "-W", "package-lock.json", f"SYSTEM_NPM={absent}", "node_modules/.installed")
    assert "apt-get" not in planned.stdout
    assert f"{bin_dir / 'npm'} ci --no-audit" in planned.stdout
