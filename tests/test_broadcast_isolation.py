"""Large rooms' broadcasts in a queue of their own (decision 0092): each company posts within its own budget and
the platform's, a chunk whose budget is spent goes back to the queue instead of sleeping in its execution, and
what a 410 or a second worker does meanwhile loses nobody an event. Small numbers stand in for 1,000 and 5,000."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from roomcast_local.testing import ManualClock, QueuedDeferrer, invoke, run_deferred, sqs_event
from shared.delivery.broadcasts import MAX_REQUEUE_DELAY_SECONDS, QueueDeferrer, requeue_delay
from shared.delivery.deferred import AnyTask, BroadcastChunk, ConnectionsGone, Recipient, UserOnline
from shared.protocol.frames import event_frame
from shared.protocol.rooms import company_room
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import settle
from tests.test_large_rooms import START, TimedGateway, add_members
from tests.test_lifecycle import Interleaver, items

CHUNK = 8
BATCH = 3
COMPANY_PER_SECOND = 3
PLATFORM_PER_SECOND = 6


@pytest.fixture
def clock() -> ManualClock:
    """Time moves only when a worker waits."""
    frozen = ManualClock()
    frozen.set(START)
    return frozen


@pytest.fixture
def timed(clock: ManualClock) -> TimedGateway:
    return TimedGateway(clock)


@pytest.fixture
def interleaver(session: boto3.session.Session) -> Interleaver:
    return Interleaver(session)


@pytest.fixture
def rooms(
    aws: None,
    timed: TimedGateway,
    deferred: QueuedDeferrer,
    clock: ManualClock,
    session: boto3.session.Session,
    interleaver: Interleaver,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    for name, value in {
        "LARGE_ROOM_THRESHOLD": 5,
        "BROADCAST_CHUNK": CHUNK,
        "FANOUT_CONCURRENCY": BATCH,
        "POSTS_PER_SECOND": PLATFORM_PER_SECOND,
        "COMPANY_POSTS_PER_SECOND": COMPANY_PER_SECOND,
    }.items():
        monkeypatch.setenv(name, str(value))
    settings.cache_clear()
    deferred.clock = clock
    built = build_services(settings(), gateway=timed, session=session, deferrer=deferred, clock=clock)
    runtime.install(built)
    yield built
    runtime.install(None)
    settings.cache_clear()


def chunk_of(company: str, members: list[str]) -> BroadcastChunk:
    return BroadcastChunk(
        companyId=company,
        room=company_room(company).name,
        frame=event_frame("campaign:started", {"name": "x"}),
        recipients=tuple(Recipient(connectionId=member) for member in members),
    )


def heard(timed: TimedGateway, members: list[str]) -> dict[str, int]:
    return {member: len(timed.events(member, "campaign:started")) for member in members}


def run_chunk(chunk: BroadcastChunk) -> dict[str, list[dict[str, str]]]:
    body = chunk.model_dump_json(by_alias=True)
    result: dict[str, list[dict[str, str]]] = invoke("handlers.broadcasts.handler", sqs_event([body]))
    return result


def test_a_chunk_past_its_companys_budget_goes_back_to_the_queue_without_waiting(
    rooms: Services, timed: TimedGateway, clock: ManualClock, deferred: QueuedDeferrer
) -> None:
    members = [f"a-{index}" for index in range(CHUNK)]
    before = clock.now()
    assert run_chunk(chunk_of("acme", members)) == {"batchItemFailures": []}
    # One second's budget posted, the rest sent back: the execution never slept for the next second.
    assert clock.now() == before
    assert sum(heard(timed, members).values()) == COMPANY_PER_SECOND
    (requeued,) = deferred.take()
    assert isinstance(requeued, BroadcastChunk)
    assert requeued.requeues == 1
    assert [recipient.connection_id for recipient in requeued.recipients] == members[COMPANY_PER_SECOND:]
    deferred.defer(requeued)
    run_deferred()
    assert heard(timed, members) == dict.fromkeys(members, 1)
    assert max(timed.seconds.values()) == COMPANY_PER_SECOND


def test_one_companys_spent_budget_leaves_another_its_own_in_the_same_second(
    rooms: Services, timed: TimedGateway, clock: ManualClock, deferred: QueuedDeferrer
) -> None:
    storm = [f"a-{index}" for index in range(CHUNK)]
    other = [f"g-{index}" for index in range(COMPANY_PER_SECOND)]
    run_chunk(chunk_of("acme", storm))
    run_chunk(chunk_of("acme", storm[COMPANY_PER_SECOND:]))  # a second chunk of the storm: nothing left for it
    run_chunk(chunk_of("globex", other))
    assert heard(timed, other) == dict.fromkeys(other, 1)
    assert sum(heard(timed, storm).values()) == COMPANY_PER_SECOND
    assert len(timed.seconds) == 1  # all in one second: globex did not wait behind acme
    assert all(isinstance(task, BroadcastChunk) and task.company_id == "acme" for task in deferred.take())


def test_two_chunk_workers_of_one_broadcast_at_once_stay_within_the_budget_and_each_member_hears_it_once(
    rooms: Services, timed: TimedGateway, interleaver: Interleaver
) -> None:
    members = [f"a-{index:02d}" for index in range(2 * CHUNK)]
    first, second = chunk_of("acme", members[:CHUNK]), chunk_of("acme", members[CHUNK:])

    @interleaver.before("UpdateItem", "postbudget#acme#")
    def the_other_worker_claims_first() -> None:
        run_chunk(second)

    run_chunk(first)
    assert interleaver.fired == ["UpdateItem"]
    run_deferred()
    assert heard(timed, members) == dict.fromkeys(members, 1)
    assert max(timed.seconds.values()) <= COMPANY_PER_SECOND


def test_a_chunk_sent_back_for_its_budget_meets_the_clean_up_of_a_410(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, clock: ManualClock
) -> None:
    room_key = company_room("acme").key("acme")
    members = [f"a-{index}" for index in range(CHUNK)]
    add_members(room_key, members)
    settle(clock)
    timed.gone.add("a-1")  # in the first batch: found gone by this execution
    run_chunk(chunk_of("acme", members))
    handed = deferred.take()
    gone = [task for task in handed if isinstance(task, ConnectionsGone)]
    (requeued,) = [task for task in handed if isinstance(task, BroadcastChunk)]
    assert [recipient.connection_id for task in gone for recipient in task.recipients] == ["a-1"]
    # While the rest waits in the queue, another of its members closes; the clean-up of the first 410 runs.
    timed.gone.add("a-5")
    rerun: list[AnyTask] = [*gone, requeued]
    for task in rerun:
        deferred.defer(task)
    run_deferred()
    alive = [member for member in members if member not in {"a-1", "a-5"}]
    assert heard(timed, alive) == dict.fromkeys(alive, 1)
    remaining = sorted(str(item["sk"]) for item in items(room_key))
    assert remaining == alive  # both gone members forgotten, one found by each execution


def test_a_broadcast_that_fails_is_reported_alone_and_one_that_is_no_broadcast_is_dropped(
    rooms: Services, timed: TimedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = chunk_of("acme", ["a-0"]).model_dump_json(by_alias=True)
    broken = chunk_of("acme", ["a-1"]).model_copy(update={"room": "no-such-room"}).model_dump_json(by_alias=True)
    not_a_broadcast = UserOnline(companyId="acme", userId="u", connectionId="c").model_dump_json(by_alias=True)
    event = sqs_event([good, broken, not_a_broadcast, "not json"])
    result = invoke("handlers.broadcasts.handler", event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert heard(timed, ["a-0", "a-1"]) == {"a-0": 1, "a-1": 0}


def test_a_requeued_chunk_waits_longer_each_time_up_to_a_minute() -> None:
    assert requeue_delay(0) == 0
    assert 1 <= requeue_delay(1) <= 1
    assert 2 <= requeue_delay(2) <= 3
    assert all(requeue_delay(requeues) <= MAX_REQUEUE_DELAY_SECONDS for requeues in range(1, 40))
    assert min(requeue_delay(20) for _ in range(50)) == MAX_REQUEUE_DELAY_SECONDS


class RecordingSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send_message(self, **request: object) -> None:
        self.sent.append(request)


def test_broadcasts_go_to_their_queue_and_every_other_task_to_the_deferred_function() -> None:
    sqs, other = RecordingSqs(), QueuedDeferrer()
    deferrer = QueueDeferrer(lambda: sqs, "https://queue", other)  # type: ignore[arg-type,return-value]
    chunk = chunk_of("acme", ["a-0"])
    deferrer.defer(chunk)
    deferrer.defer(chunk.model_copy(update={"requeues": 3}))
    online = UserOnline(companyId="acme", userId="u", connectionId="c")
    deferrer.defer(online)
    first, again = (int(str(request["DelaySeconds"])) for request in sqs.sent)
    assert (first, 4 <= again <= 6) == (0, True)
    assert all(request["QueueUrl"] == "https://queue" for request in sqs.sent)
    assert other.take() == [online]


def test_a_broadcast_the_deferred_function_still_receives_goes_to_the_queue_unposted(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer
) -> None:
    chunk = chunk_of("acme", ["a-0", "a-1"])
    assert invoke("handlers.deferred.handler", chunk.model_dump(by_alias=True, mode="json")) == {"done": True}
    assert deferred.take() == [chunk]
    assert heard(timed, ["a-0", "a-1"]) == {"a-0": 0, "a-1": 0}
