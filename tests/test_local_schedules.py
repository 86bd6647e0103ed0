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


class Slow(Lambda):
    """Functions whose invocations take `seconds`; records when each started."""

    def __init__(self, seconds: float) -> None:
        super().__init__({}, {}, {}, concurrency=1, serial=False)
        self.seconds = seconds
        self.starts: list[float] = []

    async def invoke(self, function: str, event: Any, label: str, subject: str, ordered: bool = True) -> Outcome:  # noqa: ARG002
        self.starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.seconds)
        return Outcome(result=None)


def _starts(period: float, seconds: float, within: float) -> int:
    async def scenario() -> int:
        functions = Slow(seconds)
        scheduler = Scheduler([Schedule("Slow.Tick", "Slow", 60)], functions, period, {})
        scheduler.start()
        await asyncio.sleep(within)
        scheduler.stop()
        return len(functions.starts)

    return asyncio.run(scenario())


def test_a_schedule_runs_at_a_fixed_rate_not_delayed_by_how_long_its_runs_take() -> None:
    # Runs of 0.08 s every 0.1 s: ten in a second at a fixed rate, five or six at a fixed delay (0.18 s apart).
    assert _starts(0.1, 0.08, 1.05) >= 8


def test_a_tick_that_finds_the_last_run_still_going_is_skipped_not_piled_up() -> None:
    # Runs of 0.25 s every 0.1 s: one start every third tick at most, never two runs at once.
    assert 2 <= _starts(0.1, 0.25, 1.05) <= 4
