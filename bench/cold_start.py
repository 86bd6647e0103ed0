"""Cold start: the median CPU time to import each handler module in a fresh interpreter, over `import boto3`.

The functions' code is imported as `make build` ships it (decision 0067): a copy of src/ compiled to bytecode as
the build compiles it, read-only (`PYTHONDONTWRITEBYTECODE`), beside the same copy as source only (what every cold
start compiled before the build shipped bytecode). Third-party packages are this environment's, with their
bytecode, as the layer now ships them. CPU time, not the wall clock: an import is CPU-bound, and on a shared
machine the wall clock mostly measures the other processes."""

from __future__ import annotations

import compileall
import os
import py_compile
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from roomcast_local.template import load_template, resources

RUNS = 7
SOURCE_RUNS = 3
ROOT = Path(__file__).resolve().parents[1]


def _import_seconds(module: str, code_dir: Path) -> float:
    code = f"import time; t = time.process_time(); import {module}; print(time.process_time() - t)"
    environment = {
        **os.environ, "PYTHONPATH": str(code_dir), "POWERTOOLS_TRACE_DISABLED": "true", "PYTHONDONTWRITEBYTECODE": "1",
    }  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)  # noqa: S603
    return float(done.stdout.strip())


def _copy_of_src(into: Path, compiled: bool) -> Path:
    shutil.copytree(ROOT / "src", into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if compiled:  # as the Makefile's build step: every module, used as it is
        compileall.compile_dir(into, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return into


def _medians(modules: list[str], code_dir: Path, runs: int) -> dict[str, float]:
    """Runs are interleaved (boto3 and every module, in a new random order each round) so that a busy moment of
    the machine, or a place in the order, weighs on all of them alike."""
    samples: dict[str, list[float]] = {module: [] for module in ["boto3", *modules]}
    order = list(samples)
    for _ in range(runs):
        random.shuffle(order)
        for module in order:
            samples[module].append(_import_seconds(module, code_dir))
    return {module: statistics.median(times) for module, times in samples.items()}


def run() -> dict[str, dict[str, float]]:
    """Ratios to `import boto3` as shipped, their medians in milliseconds, and the ratios from source."""
    handlers = resources(load_template(), "AWS::Serverless::Function").values()
    modules = sorted({body["Properties"]["Handler"].rsplit(".", 1)[0] for body in handlers})
    with tempfile.TemporaryDirectory() as scratch:
        shipped = _medians(modules, _copy_of_src(Path(scratch) / "compiled", compiled=True), RUNS)
        source = _medians(modules, _copy_of_src(Path(scratch) / "source", compiled=False), SOURCE_RUNS)
    return {
        "cold_start": {module: round(shipped[module] / shipped["boto3"], 3) for module in modules},
        "cold_start_ms": {module: round(seconds * 1000, 1) for module, seconds in shipped.items()},
        "cold_start_from_source": {module: round(source[module] / source["boto3"], 3) for module in modules},
    }
