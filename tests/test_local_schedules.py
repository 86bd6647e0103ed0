"""The local stack's schedules (roomcast_local.schedules): the template's rate() events and the period each runs at."""

from __future__ import annotations

import asyncio
from typing import Any

from roomcast_local.schedules import Schedule, Scheduler, scheduled_event, schedules
from roomcast_local.template import load_template
from roomcast_local.workers import Lambda, Outcome

NO_FUNCTIONS = Lambda({}, {}, {}, concurrency=1, serial=False)


def test_rate_schedules_come_from_the_template_with_their_period() -> None:
    found = {schedule.name: schedule for schedule in schedules(load_template())}
    assert found["SweepFunction.EveryQuarterHour"] == Schedule("SweepFunction.EveryQuarterHour", "SweepFunction", 900)
    assert found["HeartbeatFunction.EveryMinute"].every_seconds == 60


def test_a_function_given_a_period_runs_at_it_unless_every_schedule_is_overridden() -> None:
    heartbeat = Schedule("HeartbeatFunction.EveryMinute", "HeartbeatFunction", 60)
    sweep = Schedule("SweepFunction.EveryQuarterHour", "SweepFunction", 900)
    periods = {"HeartbeatFunction": 25.0}
    by_rate = Scheduler([heartbeat, sweep], NO_FUNCTIONS, None, periods)
    assert (by_rate.period(heartbeat), by_rate.period(sweep)) == (25.0, 900)
    every_second = Scheduler([heartbeat, sweep], NO_FUNCTIONS, 1.0, periods)
    assert (every_second.period(heartbeat), every_second.period(sweep)) == (1.0, 1.0)


def test_a_scheduled_event_names_its_rule() -> None:
    event = scheduled_event(Schedule("SweepFunction.EveryQuarterHour", "SweepFunction", 900))
    assert (event["source"], event["detail-type"]) == ("aws.events", "Scheduled Event")
    assert event["resources"][0].endswith(":rule/SweepFunction.EveryQuarterHour")


class Hanging(Lambda):
    """Functions whose invocations never end: a schedule at a fixed delay would start one and wait forever."""

    def __init__(self) -> None:
        super().__init__({}, {}, {}, concurrency=1, serial=False)
        self.started = 0

    async def invoke(self, function: str, event: Any, label: str, subject: str, ordered: bool = True) -> Outcome:  # noqa: ARG002
        self.started += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_a_schedule_runs_at_a_fixed_rate_whether_its_last_run_has_ended_or_not() -> None:
    async def scenario() -> int:
        functions = Hanging()
        scheduler = Scheduler([Schedule("Slow.Tick", "Slow", 60)], functions, 0.05, {})
        scheduler.start()
        await asyncio.sleep(0.5)
        scheduler.stop()
        return functions.started

    # Ten ticks in 0.5 s; at least three however late a loaded machine wakes the loop.
    assert asyncio.run(scenario()) >= 3
