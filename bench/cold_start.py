"""Cold start: the median time to import each handler module in a fresh interpreter, over `import boto3`."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

from roomcast_local.template import load_template, resources

RUNS = 9
ROOT = Path(__file__).resolve().parents[1]


def _import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "POWERTOOLS_TRACE_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)  # noqa: S603
    return float(done.stdout.strip())


def run() -> tuple[dict[str, float], dict[str, float]]:
    """Ratios to `import boto3`, and the raw medians in milliseconds. Runs are interleaved (boto3 and every
    module, in a new random order each round) so that a busy moment of the machine, or a place in the order,
    weighs on all of them alike."""
    handlers = resources(load_template(), "AWS::Serverless::Function").values()
    modules = sorted({body["Properties"]["Handler"].rsplit(".", 1)[0] for body in handlers})
    samples: dict[str, list[float]] = {module: [] for module in ["boto3", *modules]}
    order = list(samples)
    for _ in range(RUNS):
        random.shuffle(order)
        for module in order:
            samples[module].append(_import_seconds(module))
    medians = {module: statistics.median(times) for module, times in samples.items()}
    ratios = {module: round(medians[module] / medians["boto3"], 3) for module in modules}
    return ratios, {module: round(seconds * 1000, 1) for module, seconds in medians.items()}
