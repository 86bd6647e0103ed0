"""The local stack's schedules (roomcast_local.schedules): the template's rate() events and the period each runs at."""

from __future__ import annotations

from roomcast_local.schedules import Schedule, Scheduler, scheduled_event, schedules
from roomcast_local.template import load_template
from roomcast_local.workers import Lambda

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
