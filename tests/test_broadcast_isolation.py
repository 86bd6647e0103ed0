"""Large rooms' broadcasts in a queue of their own (decision 0092): each company posts within its own budget and
the platform's, a chunk whose budget is spent goes back to the queue instead of sleeping in its execution, and
what a 410 or a second worker does meanwhile loses nobody an event. Small numbers stand in for 1,000 and 5,000."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from roomcast_local.template import load_template
from roomcast_local.testing import ManualClock, Peer, QueuedDeferrer, invoke, run_deferred, sqs_event
from shared.delivery.broadcasts import (
    MAX_REQUEUE_DELAY_SECONDS,
    QueueDeferrer,
    message_body,
    parse_broadcast,
    requeue_delay,
)
from shared.delivery.deferred import AnyTask, BroadcastChunk, ConnectionsGone, Recipient, RoomBroadcast, UserOnline
from shared.protocol.codec import Codec
from shared.protocol.frames import encoded_size, event_frame
from shared.protocol.limits import Limits
from shared.protocol.rooms import company_room, conversation_room
from shared.stores.budget import TenantBudgets
from shared.stores.rooms import membership_pk
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import TABLE_NAMES, Interleaver, settle
from tests.test_large_rooms import START, TimedGateway, add_members
from tests.test_lifecycle import items, online

CHUNK = 8
BATCH = 3
COMPANY_PER_SECOND = 3
PLATFORM_PER_SECOND = 6
# SQS's message size before August 2025, and still the default of a queue made by anything but CloudFormation.
OLD_SQS_MESSAGE_BYTES = 256 * 1024


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
    take = TenantBudgets.take

    def budget_unreachable_for_initech(self: TenantBudgets, company_id: str, wanted: int, now: datetime) -> int:
        if company_id == "initech":
            raise RuntimeError("DynamoDB unavailable")
        return take(self, company_id, wanted, now)

    monkeypatch.setattr(TenantBudgets, "take", budget_unreachable_for_initech)
    good = chunk_of("acme", ["a-0"]).model_dump_json(by_alias=True)
    failing = chunk_of("initech", ["i-0"]).model_dump_json(by_alias=True)
    not_a_broadcast = UserOnline(companyId="acme", userId="u", connectionId="c").model_dump_json(by_alias=True)
    event = sqs_event([good, failing, not_a_broadcast, "not json"])
    result = invoke("handlers.broadcasts.handler", event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert heard(timed, ["a-0", "i-0"]) == {"a-0": 1, "i-0": 0}


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


# ---- The adversarial review's suspicions (issue 23, items 2 and 5) ----


def emitted(out: str) -> Counter[str]:
    """The metrics the handlers flushed (EMF lines on stdout), summed by name."""
    counted: Counter[str] = Counter()
    for line in out.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        record = json.loads(line)
        for definition in record["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                value = record[metric["Name"]]
                counted[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return counted


def test_a_broadcast_naming_no_room_is_dropped_with_a_log_line_and_a_metric_not_retried(
    rooms: Services, timed: TimedGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bodies = [
        chunk_of("acme", ["a-0"]).model_copy(update={"room": room}).model_dump_json(by_alias=True)
        for room in ("no-such-room", "planet:x", "company:")
    ]
    split = RoomBroadcast(companyId="acme", room="nowhere", frame=event_frame("campaign:started", {"name": "x"}))
    capsys.readouterr()
    result = invoke("handlers.broadcasts.handler", sqs_event([*bodies, split.model_dump_json(by_alias=True)]))
    # Not failed: a message that can never be a broadcast would be received three times, then dead-lettered.
    assert result == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert emitted(out)["BroadcastsDropped"] == 4
    assert [record.getMessage() for record in caplog.records] == ["not a broadcast"] * 4
    assert heard(timed, ["a-0"]) == {"a-0": 0}


def test_a_chunk_of_a_full_size_event_in_any_script_fits_its_queue_message(aws: None) -> None:
    """SQS counts a message's UTF-8 bytes, as the event's own limit does (128 KiB); a body that escaped every
    non-ASCII character took up to three times its event (moto counts characters: the bytes are checked here)."""
    most = int(load_template()["Resources"]["BroadcastQueue"]["Properties"]["MaximumMessageSize"])
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="broadcasts", Attributes={"MaximumMessageSize": str(most)})["QueueUrl"]
    deferrer = QueueDeferrer(lambda: sqs, url, QueuedDeferrer())
    limit = Limits().max_outbound_bytes
    name = "campaign:started"
    envelope = encoded_size(event_frame(name, {"name": ""}))
    # A chunk's most members, named as API Gateway names them, each a Socket.IO session's.
    recipients = tuple(
        Recipient(connectionId=f"{index:015d}=", codec=Codec.SOCKETIO, since=10**15) for index in range(500)
    )
    for text in ("é", "ж", "中", "😀", "\ufffe\uffff"):
        frame = event_frame(name, {"name": text * ((limit - envelope) // len(text.encode("utf-8")))})
        assert limit - 4 < encoded_size(frame) <= limit
        chunk = BroadcastChunk(companyId="c" * 64, room="company:" + "c" * 64, frame=frame, recipients=recipients)
        deferrer.defer(chunk)
        (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        size = len(message["Body"].encode("utf-8"))
        assert size <= most
        if text != "\ufffe\uffff":  # the two characters SQS refuses unescaped: 6 bytes each instead of 3
            assert size <= OLD_SQS_MESSAGE_BYTES
        assert parse_broadcast(message["Body"]) == chunk


def refusing(deferred: QueuedDeferrer, monkeypatch: pytest.MonkeyPatch, refused: set[int]) -> None:
    """The broadcast queue refuses the broadcasts sent to it whose numbers (from 1) are in `refused`."""
    sent = 0
    accept = deferred.defer

    def defer(task: AnyTask) -> None:
        nonlocal sent
        if isinstance(task, BroadcastChunk | RoomBroadcast):
            sent += 1
            if sent in refused:
                raise RuntimeError("SQS unavailable")
        accept(task)

    monkeypatch.setattr(deferred, "defer", defer)


def received_until_done(split: RoomBroadcast) -> int:
    """As the event source runs a message: received again while it fails (up to the redrive policy's 3 times)."""
    body = split.model_dump_json(by_alias=True)
    for receive in range(1, 4):
        if not invoke("handlers.broadcasts.handler", sqs_event([body]))["batchItemFailures"]:
            return receive
    raise AssertionError("dead-lettered")


@pytest.mark.parametrize("refused", [{2}, {2, 3}], ids=["a chunk", "a chunk and what is left of the split"])
def test_a_chunk_the_split_cannot_hand_off_loses_nobody_the_event(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, monkeypatch: pytest.MonkeyPatch, refused: set[int]
) -> None:
    room = company_room("acme")
    members = [f"a-{index:02d}" for index in range(3 * CHUNK)]
    add_members(room.key("acme"), members)
    refusing(deferred, monkeypatch, refused)
    split = RoomBroadcast(companyId="acme", room=room.name, frame=event_frame("campaign:started", {"name": "x"}))
    receives = received_until_done(split)
    run_deferred()
    counted = heard(timed, members)
    assert min(counted.values()) == 1
    if refused == {2}:
        # What the refused chunk left was handed on as a split of its own: nobody hears the event twice.
        assert (receives, counted) == (1, dict.fromkeys(members, 1))
    else:
        # Nothing could be handed on for the rest: the split is received again, and the first chunk's members,
        # handed on before, hear the event twice (the message id lets clients drop it), the others once.
        assert receives == 2
        assert sorted(counted.values()) == [1] * (2 * CHUNK) + [2] * CHUNK


class BudgetWrites:
    """The budget claims made, by item: each second's platform item and each company's."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.claims: Counter[str] = Counter()
        # Registered before the services' clients are made: a client copies the hooks it is created with.
        session.events.register("before-parameter-build.dynamodb.UpdateItem", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        key = str(params["Key"]["pk"]["S"])
        if key.startswith("postbudget#"):
            self.claims[key] += 1

    def platform(self) -> int:
        return sum(count for key, count in self.claims.items() if key.count("#") == 1)


@pytest.fixture
def budget_writes(session: boto3.session.Session) -> BudgetWrites:
    return BudgetWrites(session)


def test_many_companies_past_a_spent_platform_second_cost_its_item_one_refused_claim_not_one_each(
    budget_writes: BudgetWrites, rooms: Services, timed: TimedGateway, clock: ManualClock
) -> None:
    """The platform's item of a second is the one every company's claims share: a hot key if each chunk arriving
    after the second is spent claimed it again. Nor is a company's budget spent on posts the platform refuses."""
    first, second = [f"a-{index}" for index in range(3)], [f"g-{index}" for index in range(3)]
    run_chunk(chunk_of("acme", first))
    run_chunk(chunk_of("globex", second))  # the platform's second is spent
    assert budget_writes.platform() == 2
    late = {f"co-{index}": [f"co-{index}-m"] for index in range(10)}
    for company, members in late.items():
        run_chunk(chunk_of(company, members))
    assert budget_writes.platform() == 3  # one refused claim for the ten
    late_companies = [key for key in budget_writes.claims if key.startswith("postbudget#co-")]
    assert len(late_companies) == 1  # only the first late company's own budget was asked (and spent for nothing)
    run_deferred()
    everyone = first + second + [member for members in late.values() for member in members]
    assert heard(timed, everyone) == dict.fromkeys(everyone, 1)
    assert max(timed.seconds.values()) <= PLATFORM_PER_SECOND


def test_a_storms_chunks_waiting_in_the_queue_do_not_hold_back_another_companys(
    budget_writes: BudgetWrites, rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, clock: ManualClock
) -> None:
    """Received in one batch with a storm's chunks, another company's chunk is posted at once, the storm's sent back
    to wait out their delay (holding no execution); the storm's spent second costs its item one claim each."""
    storm = [chunk_of("acme", [f"a-{chunk}-{index}" for index in range(CHUNK)]) for chunk in range(9)]
    other = chunk_of("globex", ["g-0", "g-1"])
    bodies = [chunk.model_dump_json(by_alias=True) for chunk in [*storm, other]]
    before = clock.now()
    assert invoke("handlers.broadcasts.handler", sqs_event(bodies)) == {"batchItemFailures": []}
    assert clock.now() == before  # nobody waited
    assert heard(timed, ["g-0", "g-1"]) == {"g-0": 1, "g-1": 1}
    assert budget_writes.claims[f"postbudget#acme#{int(before.timestamp())}"] == 2  # granted once, refused once
    requeued = deferred.take()
    assert len(requeued) == len(storm)
    # Each sent back to wait at least a second, invisible to the event source meanwhile.
    assert all(isinstance(task, BroadcastChunk) and task.company_id == "acme" for task in requeued)
    assert {requeue_delay(task.requeues) for task in requeued if isinstance(task, BroadcastChunk)} == {1}


def connected(timed: TimedGateway, count: int) -> list[str]:
    ids = [f"p-{index:02d}" for index in range(count)]
    for connection_id in ids:
        Peer(timed, connection_id, f"u-{connection_id}", "acme").connect()
    run_deferred()
    return ids


def campaign(rooms: Services) -> None:
    report = rooms.hub.emit("acme", company_room("acme"), event_frame("campaign:started", {"name": "x"}))
    assert report.handed_off


def test_a_disconnect_and_its_410_while_a_chunk_posts_to_it_lose_the_others_nothing_and_leave_nothing(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, interleaver: Interleaver
) -> None:
    members = connected(timed, CHUNK)
    leaving = members[2]
    deferred.auto = False
    campaign(rooms)

    # The chunk has its members and claims its first batch; meanwhile the connection closes (API Gateway answers
    # 410 from then on) and its $disconnect runs whole.
    @interleaver.before("UpdateItem", "postbudget#acme#")
    def it_closes() -> None:
        timed.gone.add(leaving)
        Peer(timed, leaving, f"u-{leaving}", "acme").disconnect()

    run_deferred()  # the split, its chunk (the 410 handed off) and the clean-up after the $disconnect's
    assert interleaver.fired == ["UpdateItem"]
    staying = [member for member in members if member != leaving]
    assert heard(timed, members) == {**dict.fromkeys(staying, 1), leaving: 0}
    (record,) = items(f"conn#{leaving}")
    assert "closedAt" in record  # its tombstone only (decision 12), not brought back by the clean-up
    assert leaving not in {str(item["sk"]) for item in items(company_room("acme").key("acme"))}
    assert f"u-{leaving}" not in online(rooms)
    offline = [frame for member in staying for frame in timed.events(member, "status:offline")]
    assert [frame["data"]["userId"] for frame in offline] == [f"u-{leaving}"] * len(staying)


def test_a_connect_joining_the_room_while_the_split_reads_it_hears_the_event_at_most_once_and_the_others_once(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, interleaver: Interleaver
) -> None:
    members = connected(timed, CHUNK)
    deferred.auto = False
    campaign(rooms)

    @interleaver.before("Query", "room#acme#company:acme")
    def one_connects() -> None:
        Peer(timed, "late", "u-late", "acme").connect()

    run_deferred()
    assert interleaver.fired == ["Query"]
    assert heard(timed, members) == dict.fromkeys(members, 1)
    assert heard(timed, ["late"])["late"] <= 1
    assert "late" in {str(item["sk"]) for item in items(company_room("acme").key("acme"))}


def test_the_410_clean_up_of_a_chunk_meeting_the_connections_own_disconnect_announces_it_gone_once(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, interleaver: Interleaver, clock: ManualClock
) -> None:
    members = connected(timed, CHUNK)
    leaving = members[1]
    settle(clock)
    timed.gone.add(leaving)  # closed by API Gateway; its $disconnect not run yet
    deferred.auto = False
    campaign(rooms)

    # The chunk's 410 is cleaned up; as the clean-up closes the record, the $disconnect runs whole.
    @interleaver.before("UpdateItem", f"conn#{leaving}")
    def its_disconnect_arrives() -> None:
        Peer(timed, leaving, f"u-{leaving}", "acme").disconnect()

    run_deferred()
    assert interleaver.fired == ["UpdateItem"]
    staying = [member for member in members if member != leaving]
    assert heard(timed, members) == {**dict.fromkeys(staying, 1), leaving: 0}
    assert leaving not in {str(item["sk"]) for item in items(company_room("acme").key("acme"))}
    assert f"u-{leaving}" not in online(rooms)
    offline = [frame for member in staying for frame in timed.events(member, "status:offline")]
    assert [frame["data"]["userId"] for frame in offline] == [f"u-{leaving}"] * len(staying)


def test_every_chunk_and_requeue_of_a_split_carries_only_members_read_under_its_own_company(
    rooms: Services, timed: TimedGateway, deferred: QueuedDeferrer, clock: ManualClock
) -> None:
    """Where chunks come from: the split reads the room under the broadcast's company's key, a requeue is a part of
    its own chunk's members. Another company's room of the same name (its own key) is never read into one."""
    room = conversation_room("c-1")
    ours = [f"a-{index:02d}" for index in range(2 * CHUNK + 1)]
    theirs = [f"b-{index:02d}" for index in range(2 * CHUNK + 1)]
    add_members(room.key("acme"), ours)
    add_members(room.key("globex"), theirs)
    deferred.defer(RoomBroadcast(companyId="acme", room=room.name, frame=event_frame("message:new", {"id": "m"})))
    seen: list[BroadcastChunk] = []
    while tasks := deferred.take():
        for task in tasks:
            if isinstance(task, BroadcastChunk):
                seen.append(task)
                clock.sleep(requeue_delay(task.requeues))
            body = task.model_dump_json(by_alias=True)
            invoke("handlers.broadcasts.handler", sqs_event([body]))
    assert any(chunk.requeues for chunk in seen)
    assert {chunk.company_id for chunk in seen} == {"acme"}
    assert {recipient.connection_id for chunk in seen for recipient in chunk.recipients} == set(ours)
    assert {member: len(timed.events(member)) for member in ours + theirs} == {
        **dict.fromkeys(ours, 1),
        **dict.fromkeys(theirs, 0),
    }


@pytest.mark.xfail(
    strict=True,
    reason="the chunk worker trusts its message's recipients: a message forged onto the queue by a principal "
    "allowed sqs:SendMessage could name another company's connections; IAM is the boundary (decision 0103)",
)
def test_a_chunk_forged_to_name_another_companys_connections_reaches_none_of_them(
    rooms: Services, timed: TimedGateway
) -> None:
    theirs = ["b-00", "b-01"]
    add_members(company_room("globex").key("globex"), theirs)
    run_chunk(chunk_of("acme", theirs))
    assert heard(timed, theirs) == {"b-00": 0, "b-01": 0}


# ---- A second review (decision 0103's amendments) ----


@pytest.fixture
def queued_rooms(
    aws: None, timed: TimedGateway, clock: ManualClock, session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Services, Any, str]]:
    """The services with the real QueueDeferrer, on a moto queue too small for a chunk of the room's event but large
    enough for what a split leaves (as a queue of SQS's old 256 KiB is, for a 120 KiB event of U+FFFF)."""
    for name, value in {"LARGE_ROOM_THRESHOLD": 5, "BROADCAST_CHUNK": CHUNK, "FANOUT_CONCURRENCY": BATCH}.items():
        monkeypatch.setenv(name, str(value))
    settings.cache_clear()
    sqs = session.client("sqs")
    frame = event_frame("campaign:started", {"name": "x" * 2000})
    leftover = RoomBroadcast(companyId="acme", room=company_room("acme").name, frame=frame, startAt="a-00")
    most = len(message_body(leftover)) + 40  # a chunk of 8 takes some 300 bytes more
    url = sqs.create_queue(QueueName="broadcasts", Attributes={"MaximumMessageSize": str(most)})["QueueUrl"]
    built = build_services(
        settings(),
        gateway=timed,
        session=session,
        deferrer=QueueDeferrer(lambda: sqs, url, QueuedDeferrer()),
        clock=clock,
    )
    runtime.install(built)
    yield built, sqs, url
    runtime.install(None)
    settings.cache_clear()


def test_a_split_whose_chunk_the_queue_always_refuses_is_dead_lettered_not_sent_on_unchanged_forever(
    queued_rooms: tuple[Services, Any, str], timed: TimedGateway
) -> None:
    """A refusal that is the chunk's own (its size) refuses it again in every split of what it left: each such split
    must fail, so that the redrive policy (3 receives) ends it in the dead-letter queue and its alarm."""
    _, sqs, url = queued_rooms
    members = [f"a-{index:02d}" for index in range(2 * CHUNK)]
    add_members(company_room("acme").key("acme"), members)
    frame = event_frame("campaign:started", {"name": "x" * 2000})
    split = RoomBroadcast(companyId="acme", room=company_room("acme").name, frame=frame)
    sqs.send_message(QueueUrl=url, MessageBody=message_body(split))
    receives: Counter[str] = Counter()
    dead_lettered = 0
    for _ in range(12):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        if not messages:
            break
        event = sqs_event([message["Body"] for message in messages])
        failed = {
            failure["itemIdentifier"] for failure in invoke("handlers.broadcasts.handler", event)["batchItemFailures"]
        }
        for record, message in zip(event["Records"], messages, strict=True):
            receives[message["Body"]] += 1
            if record["messageId"] not in failed or receives[message["Body"]] == 3:  # done, or past the redrive
                dead_lettered += record["messageId"] in failed
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert not sqs.receive_message(QueueUrl=url).get("Messages"), "still sending itself on after 12 receives"
    assert dead_lettered == 1
    assert sum(heard(timed, members).values()) == 0


def test_what_a_refused_chunk_left_is_read_again_in_id_order_across_the_partitions_with_its_joins_and_leaves(
    rooms: Services,
    timed: TimedGateway,
    deferred: QueuedDeferrer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ids that sort apart from the order the 16 partitions are read in: the continuation starts at the refused
    chunk's first member; a member before it who leaves was posted to, one after it who leaves is not; one who joins
    after it is, one who joins before it is not; the excluded member never is; nobody hears it twice."""
    room = company_room("acme")
    members = sorted(f"{index:x}{'z' * (index % 3)}=" for index in range(3 * CHUNK + 2))
    add_members(room.key("acme"), members)
    refusing(deferred, monkeypatch, {3})  # the split (1) and chunks 2..: its second chunk refused
    frame = event_frame("campaign:started", {"name": "x"})
    excluded = members[CHUNK + 2]
    split = RoomBroadcast(companyId="acme", room=room.name, frame=frame, exclude=excluded)
    deferred.defer(split)
    deferred.auto = False
    # The split runs first (one receive), its continuation after: between them, members come and go.
    (first,) = deferred.take()
    invoke("handlers.broadcasts.handler", sqs_event([first.model_dump_json(by_alias=True)]))
    handed = deferred.take()
    (leftover,) = [task for task in handed if isinstance(task, RoomBroadcast)]
    readers = [member for member in members if member != excluded]
    assert leftover.start_at == readers[CHUNK]
    assert {r.connection_id for task in handed if isinstance(task, BroadcastChunk) for r in task.recipients} == set(
        readers[:CHUNK]
    )
    left_before, left_after = readers[1], readers[CHUNK + 3]
    joined_before, joined_after = readers[0] + "a", readers[-1] + "a"
    table = boto3.resource("dynamodb").Table(TABLE_NAMES["ConnectionsTable"])
    for gone in (left_before, left_after):
        table.delete_item(Key={"pk": membership_pk(room.key("acme"), gone), "sk": gone})
    add_members(room.key("acme"), [joined_before, joined_after])
    for task in handed:
        deferred.defer(task)
    deferred.auto = True
    run_deferred()
    expected = {member: 1 for member in readers if member != left_after}
    assert heard(timed, [*members, joined_before, joined_after]) == {
        **expected,
        excluded: 0,
        left_after: 0,
        joined_before: 0,
        joined_after: 1,
    }


# The characters SQS takes in a message body (XML's): anything else is refused with InvalidMessageContents. moto does
# not check them, so a body is checked against this set itself.
SQS_CHARACTERS = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
# Any string the Hub can hand off: its frame is encoded in strict UTF-8 first (`Hub._check_size`), so no surrogate.
EDGES = '\ufffe\uffff\ufffd\ud7ff\ue000\U0010ffff\x00\x08\x0b\x1f\x7f\\"\u2028'
# Lists joined, not st.text: st.text folds the sampled edges into its own characters and almost never draws them.
ENCODABLE = st.lists(st.characters(exclude_categories=["Cs"]) | st.sampled_from(EDGES), max_size=40).map("".join)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    key=ENCODABLE,
    value=ENCODABLE,
    anything=st.lists(st.characters(codec=None) | st.sampled_from(EDGES + "\ud800\udfff"), max_size=40).map("".join),
)
def test_a_queue_body_is_sqs_characters_only_and_gives_back_exactly_any_frame_the_hub_can_hand_off(
    key: str, value: str, anything: str
) -> None:
    """Control characters, the escape character and SQS's refused U+FFFE and U+FFFF included, as key or value;
    a surrogate (which no frame can hold) is at least never sent to SQS as itself."""
    chunk = BroadcastChunk(
        companyId="acme",
        room="company:acme",
        frame=event_frame("campaign:started", {key: value, "list": [value, "\\" + value]}),
        recipients=(Recipient(connectionId="c-0"),),
    )
    body = message_body(chunk)
    assert SQS_CHARACTERS.fullmatch(body)
    assert parse_broadcast(body) == chunk
    assert SQS_CHARACTERS.fullmatch(message_body(chunk.model_copy(update={"frame": {"name": anything}})))


def test_a_body_nested_past_the_parsers_depth_is_dropped_alone_not_failing_the_batch_it_came_in(
    rooms: Services, timed: TimedGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """json.loads raises RecursionError, no ValueError: the whole invocation failed, the batch was received again
    (its chunks posted again) three times, then dead-lettered whole."""
    good = chunk_of("acme", ["a-0"]).model_dump_json(by_alias=True)
    capsys.readouterr()
    assert invoke("handlers.broadcasts.handler", sqs_event([good, "[" * 100_000])) == {"batchItemFailures": []}
    assert emitted(capsys.readouterr().out)["BroadcastsDropped"] == 1
    assert heard(timed, ["a-0"]) == {"a-0": 1}


def test_a_container_that_saw_the_platforms_second_spent_asks_again_in_the_next_one(
    budget_writes: BudgetWrites, rooms: Services, timed: TimedGateway, clock: ManualClock, deferred: QueuedDeferrer
) -> None:
    """At the last microsecond of the spent second the next chunk is refused without a claim; a microsecond later,
    in a new second, it is granted."""
    run_chunk(chunk_of("acme", [f"a-{index}" for index in range(3)]))
    run_chunk(chunk_of("globex", [f"g-{index}" for index in range(3)]))
    run_chunk(chunk_of("initech", ["i-0"]))  # refused by the platform: remembered
    claims = sum(budget_writes.claims.values())
    clock.set(START.replace(microsecond=999_999))
    run_chunk(chunk_of("umbrella", ["u-0"]))
    assert sum(budget_writes.claims.values()) == claims  # the same second: not asked
    clock.set(START.replace(microsecond=999_999) + timedelta(microseconds=1))
    run_chunk(chunk_of("hooli", ["h-0"]))
    assert heard(timed, ["h-0", "u-0", "i-0"]) == {"h-0": 1, "u-0": 0, "i-0": 0}
    assert {type(task) for task in deferred.take()} == {BroadcastChunk}
