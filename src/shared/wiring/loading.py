"""A function's import, as one step for Python's garbage collector (decision 0106).

Importing a function allocates a few hundred thousand objects (boto3's, pydantic's, ours) that live as long as its
container. Left alone, the collector runs a full collection in the middle of the import and scans every one of
them, to free nothing: about a tenth of `import boto3` again on every cold start. `handlers/__init__.py`, which
every function's module is imported through, calls `loading()` first; each function's module calls `loaded()`
last, which moves what the import allocated out of the collector's sight (`gc.freeze`: later full collections,
during invocations, no longer scan it either) and turns the collector back on."""

from __future__ import annotations

import gc


def loading() -> None:
    gc.disable()


def loaded() -> None:
    gc.freeze()
    gc.enable()
