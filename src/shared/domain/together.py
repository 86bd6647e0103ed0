"""Independent I/O calls of one request, run at once: its path is as long as its longest call, not their sum
(decision 0047). DynamoDB calls block on the network, not the CPU, so threads overlap them under the GIL."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")

# A request starts at most three calls here besides the one its own thread runs. Nothing that runs here
# submits more work, so a full pool queues calls and never deadlocks.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="together")


def start(call: Callable[[], A]) -> Future[A]:
    """Begin `call` on the pool; the caller collects it (or its exception) with `.result()`."""
    return _POOL.submit(call)


@overload
def together(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]: ...


@overload
def together(first: Callable[[], A], second: Callable[[], B], third: Callable[[], C]) -> tuple[A, B, C]: ...


def together(
    first: Callable[[], object], second: Callable[[], object], third: Callable[[], object] | None = None
) -> tuple[object, ...]:
    """Run the calls at once (the first on this thread) and return their results in order. Every call is
    waited for before anything is raised, and the first call's failure is raised before the second's."""
    pending = [start(call) for call in (second, third) if call is not None]
    outcomes: list[object | BaseException] = []
    try:
        outcomes.append(first())
    except Exception as error:
        outcomes.append(error)
    for future in pending:
        try:
            outcomes.append(future.result())
        except Exception as error:
            outcomes.append(error)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return tuple(outcomes)
