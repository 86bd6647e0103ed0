"""The local stack's SQS (roomcast_local.sqs): delays, visibility, batches, redrive, and what it reads from
template.yaml. Its JSON API and poller run end to end in tests/e2e/test_presence_and_kick.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roomcast_local.sqs import EventSource, Queue, QueueDefinition, SqsApi, event_sources, queue_definitions
from roomcast_local.template import load_template
from roomcast_local.workers import Outcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_message_is_received_only_once_its_delay_is_over() -> None:
    clock = FakeClock()
    queue = Queue(QueueDefinition("q"), clock)
    queue.send("later", 30)
    queue.send("now", 0)
    (now,) = queue.receive(10)
    assert now.body == "now"
    queue.delete(now.receipt_handle)
    clock.now += 29.9
    assert queue.receive(10) == []
    clock.now += 0.1
    assert [m.body for m in queue.receive(10)] == ["later"]


def test_the_queues_own_delay_applies_when_a_message_names_none() -> None:
    clock = FakeClock()
    queue = Queue(QueueDefinition("q", delay_seconds=5), clock)
    queue.send("m", None)
    assert queue.receive(1) == []
    clock.now += 5
    assert len(queue.receive(1)) == 1


def test_a_received_message_is_hidden_until_deleted_or_its_visibility_timeout_is_over() -> None:
    clock = FakeClock()
    queue = Queue(QueueDefinition("q", visibility_timeout=10), clock)
    queue.send("a", 0)
    (first,) = queue.receive(10)
    stale = first.receipt_handle
    assert queue.receive(10) == []
    clock.now += 10
    (again,) = queue.receive(10)
    assert (again.message_id, again.receive_count) == (first.message_id, 2)
    queue.delete(stale)  # the receipt of an earlier receive deletes nothing
    assert len(queue) == 1
    queue.delete(again.receipt_handle)
    assert len(queue) == 0


def test_batches_are_at_most_the_limit_oldest_first() -> None:
    clock = FakeClock()
    queue = Queue(QueueDefinition("q"), clock)
    for index in range(12):
        clock.now += 0.001
        queue.send(str(index), 0)
    assert [m.body for m in queue.receive(10)] == [str(index) for index in range(10)]
    assert [m.body for m in queue.receive(10)] == ["10", "11"]


def test_a_message_received_max_receive_count_times_leaves_the_queue() -> None:
    clock = FakeClock()
    queue = Queue(QueueDefinition("q", visibility_timeout=1, max_receive_count=2), clock)
    queue.send("poison", 0)
    queue.receive(1)
    clock.now += 1
    assert queue.exhausted() == []
    queue.receive(1)
    clock.now += 1
    assert [m.body for m in queue.exhausted()] == ["poison"]
    assert len(queue) == 0


def test_the_templates_delay_queue_feeds_the_delayed_function_and_redrives_to_its_dead_letters() -> None:
    template = load_template()
    definitions = {definition.name: definition for definition in queue_definitions(template)}
    delay = definitions["DelayQueue"]
    assert (delay.dead_letter, delay.max_receive_count, delay.visibility_timeout) == ("DelayDeadLetterQueue", 5, 180)
    broadcast = definitions["BroadcastQueue"]
    assert (broadcast.dead_letter, broadcast.max_receive_count) == ("BroadcastDeadLetterQueue", 3)
    assert event_sources(template) == [
        EventSource("DelayedFunction.Due", "DelayedFunction", "DelayQueue", batch_size=10, report_failures=True),
        EventSource(
            "BroadcastFunction.Broadcasts",
            "BroadcastFunction",
            "BroadcastQueue",
            batch_size=10,
            report_failures=True,
            maximum_concurrency=int(template["Parameters"]["BroadcastConcurrency"]["Default"]),
        ),
    ]


class SlowLambda:
    """A function whose batches last until the test lets them end, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.ran = 0
        self.release = asyncio.Event()

    async def invoke(self, _function: str, _event: Any, *_args: Any, **_kwargs: Any) -> Outcome:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.release.wait()
        self.running -= 1
        self.ran += 1
        return Outcome(result=None)


def test_an_event_source_runs_at_most_its_maximum_concurrency_and_the_rest_waits_in_the_queue() -> None:
    source = EventSource("F.Due", "F", "q", batch_size=1, maximum_concurrency=2)
    functions = SlowLambda()

    async def scenario() -> tuple[int, int]:
        tasks: list[asyncio.Future[Any]] = []
        api = SqsApi(
            [QueueDefinition("q")],
            [source],
            functions,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            lambda work: tasks.append(asyncio.ensure_future(work)),
            base_url="http://x",
        )
        for index in range(5):
            api.queues["q"].send(str(index), 0)
        api.start()
        await asyncio.sleep(0.3)
        at_once, waiting = functions.most, len(api.queues["q"])
        functions.release.set()
        await asyncio.sleep(0.5)
        api.stop()
        await asyncio.gather(*tasks)
        return at_once, waiting

    at_once, waiting = asyncio.run(scenario())
    assert at_once == 2
    assert waiting == 5  # received ones stay in the queue, hidden, until their batch is deleted
    assert functions.ran == 5


class AnsweringLambda:
    """A function that answers every batch with `result`, as Lambda hands it back to the event source."""

    def __init__(self, result: Any) -> None:
        self.result = result

    async def invoke(self, _function: str, event: Any, *_args: Any, **_kwargs: Any) -> Outcome:
        return Outcome(result=self.result(event) if callable(self.result) else self.result)


def deliver_batch(result: Any) -> Queue:
    """Two messages handed to a function that answers `result`; returns the queue, holding what is kept."""
    source = EventSource("F.Due", "F", "q", report_failures=True)
    api = SqsApi([QueueDefinition("q")], [source], AnsweringLambda(result), None, lambda _: None, base_url="http://x")  # type: ignore[arg-type]
    queue = api.queues["q"]
    queue.send("a", 0)
    queue.send("b", 0)
    asyncio.run(api._deliver(source, queue, queue.receive(10)))
    return queue


def test_a_reported_failure_keeps_that_message_alone() -> None:
    queue = deliver_batch(lambda event: {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]})
    assert len(queue) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
        {"batchItemFailures": [{"id": "a bad key"}]},
    ],
)
def test_a_failure_naming_no_message_of_the_batch_fails_the_whole_batch(answer: dict[str, Any]) -> None:
    """As Lambda does: an empty, null or unknown itemIdentifier is a failure of the whole batch."""
    assert len(deliver_batch(answer)) == 2


@pytest.mark.parametrize("answer", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}])
def test_an_answer_reporting_nothing_is_the_whole_batchs_success(answer: Any) -> None:
    assert len(deliver_batch(answer)) == 0
