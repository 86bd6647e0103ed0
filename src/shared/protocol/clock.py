"""Time as the protocol writes it: ISO 8601 UTC with milliseconds; and the clock that tells it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Clock(Protocol):
    """The one source of time (decision 0086): built once with the services and passed to whatever reads the
    time or waits; a pure function is given `now` instead. Tests pass a clock of their own."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
