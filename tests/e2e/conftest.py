"""The local stack as a developer runs it (roomcast_local.testing.start_stack), shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from roomcast_local.testing import RunningStack, start_stack, stop_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    running = start_stack()
    yield running
    stop_stack(running)
