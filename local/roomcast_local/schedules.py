"""EventBridge schedules for the local stack: the template's `rate(...)` Schedule events, each run by a timer
that invokes its function with a `Scheduled Event`, as EventBridge Scheduler's rules do."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from roomcast_local.environment import ACCOUNT, REGION
from roomcast_local.template import resources
from roomcast_local.workers import Lambda

log = logging.getLogger("stack")  # not "roomcast...": Powertools filters its own service name from root handlers


@dataclass(frozen=True)
class Schedule:
    name: str
    function: str
    every_seconds: float


_RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def schedules(template: dict[str, Any]) -> list[Schedule]:
    """SAM `Schedule` events written as `rate(N unit)`; cron expressions are not run locally."""
    found = []
    for function, body in resources(template, "AWS::Serverless::Function").items():
        for name, event in body["Properties"].get("Events", {}).items():
            expression = str(event["Properties"].get("Schedule", "")) if event["Type"] == "Schedule" else ""
            if expression.startswith("rate(") and expression.endswith(")"):
                amount, unit = expression[5:-1].split()
                found.append(Schedule(f"{function}.{name}", function, int(amount) * _RATE_UNITS[unit]))
    return found


def scheduled_event(schedule: Schedule) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{schedule.name}"],
        "detail": {},
    }


class Scheduler:
    """One timer per schedule, at a fixed rate: runs start on the ticks of a fixed grid, so a run's duration
    never delays the next (a fixed delay would drift by it), and a run that fails is logged without stopping
    the ones after it. A tick that finds the schedule's last run still going is skipped, and logged: EventBridge
    would start a second run beside it, but on a developer's machine such runs pile up cold starts faster than
    they end (decision 0073). `every` overrides each schedule's rate; `periods` sets it for some functions (the
    Socket.IO heartbeat runs at the ping interval it keeps, decision 0038)."""

    def __init__(
        self, found: list[Schedule], functions: Lambda, every: float | None, periods: dict[str, float]
    ) -> None:
        self._schedules = found
        self._functions = functions
        self._every = every
        self._periods = periods
        self._timers: list[asyncio.Future[None]] = []
        self._runs: dict[str, asyncio.Future[None]] = {}

    def period(self, schedule: Schedule) -> float:
        return self._every or self._periods.get(schedule.function, schedule.every_seconds)

    def start(self) -> None:
        self._timers = [asyncio.ensure_future(self._tick(schedule)) for schedule in self._schedules]

    def stop(self) -> None:
        for task in [*self._timers, *self._runs.values()]:
            task.cancel()

    async def _tick(self, schedule: Schedule) -> None:
        every = self.period(schedule)
        loop = asyncio.get_running_loop()
        due = loop.time() + every
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += every
            running = self._runs.get(schedule.name)
            if running is not None and not running.done():
                log.warning("schedule %s: its last run is still going; this tick is skipped", schedule.name)
                continue
            self._runs[schedule.name] = asyncio.ensure_future(self._run(schedule, every))

    async def _run(self, schedule: Schedule, every: float) -> None:
        try:
            outcome = await self._functions.invoke(
                schedule.function, scheduled_event(schedule), "schedule", schedule.name
            )
        except Exception as error:
            log.error(
                "schedule %s could not run %s: %r; it keeps its rate (every %g s)",
                schedule.name,
                schedule.function,
                error,
                every,
            )
            return
        if outcome.error is not None:
            log.warning(
                "schedule %s failed (%s); it keeps its rate (every %g s)",
                schedule.name,
                outcome.error.get("errorType"),
                every,
            )
