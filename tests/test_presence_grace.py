"""The presence grace (docs/protocol.md, decision 0060): a user whose last connection closed stays present for
PRESENCE_GRACE_SECONDS; a reconnect within it announces nothing, and its end announces `status:offline` once,
whatever closed the connection ($disconnect, a 410's clean-up, the sweep) and whatever ran beside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from roomcast_local.testing import (
    ManualClock,
    Peer,
    QueuedDelayer,
    RecordingGateway,
    deliver,
    invoke,
    lifecycle_event,
    run_deferred,
    run_delayed,
    sqs_event,
)
from shared.delivery.delayed import DelayedTask, OfflineDue
from shared.domain.presence import departure_after
from shared.protocol.identity import Identity
from shared.stores.connections import GRACE_IN_SHARD, ConnectionFailed, Departure, is_present, makes_present
from shared.wiring.services import Services
from tests.conftest import GRACE, Interleaver, settle


def listed(services: Services) -> set[str]:
    return {user["userId"] for user in services.connections.online_users("acme", None, 1000, 100_000).users}


def statuses(peer: Peer) -> list[tuple[str, str]]:
    return [
        (frame["event"], frame["data"]["userId"]) for frame in peer.received() if frame["event"].startswith("status:")
    ]


# ---- pure decisions ----


def test_an_ordinary_close_keeps_the_user_present_only_with_a_grace() -> None:
    assert departure_after(30) is Departure.GRACE
    assert departure_after(0) is Departure.NOW


def test_a_user_is_present_with_a_connection_or_within_a_grace() -> None:
    assert not is_present(None)
    assert not is_present({"pk": "presence#acme", "sk": "ana"})
    assert is_present({"connections": {"c-1"}})
    assert is_present({"offlinePending": "g"})
    assert makes_present({"ttl": 1})
    assert not makes_present({"offlinePending": "g"})  # a reconnect within the grace announces nothing


# ---- the grace ----


def test_the_last_close_announces_nothing_until_the_grace_is_over_then_offline_once(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ana.disconnect()
    assert statuses(ben) == [("status:online", "ana")]
    assert "ana" in listed(graced)  # presence:list lists her meanwhile
    assert [(type(task), seconds) for task, seconds in delayed.tasks] == [(OfflineDue, GRACE)]
    assert run_delayed() == {"batchItemFailures": []}
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert "ana" not in listed(graced)


def test_a_reconnect_within_the_grace_announces_neither_offline_nor_online(
    graced: Services, gateway: RecordingGateway
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()
    Peer(gateway, "ana-2", "ana", "acme").connect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana")]
    assert "ana" in listed(graced)
    # She is still a user who came: her next last close is graced and announced once.
    Peer(gateway, "ana-2", "ana", "acme").disconnect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_an_older_grace_cut_short_by_a_reconnect_never_ends_a_newer_one(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()
    ((first, _),) = delayed.take()
    assert isinstance(first, OfflineDue)
    Peer(gateway, "ana-2", "ana", "acme").connect().disconnect()
    # The first grace's end comes while the second grace runs: it finds another grace and says nothing.
    assert graced.presence.end_grace(first) is False
    assert statuses(ben) == [("status:online", "ana")]
    assert "ana" in listed(graced)
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_of_two_connections_only_the_last_close_begins_a_grace(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect()
    Peer(gateway, "ana-2", "ana", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").disconnect()
    assert delayed.tasks == []
    Peer(gateway, "ana-2", "ana", "acme").disconnect()
    assert len(delayed.tasks) == 1
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_a_close_seen_twice_schedules_the_same_grace_again_and_it_ends_once(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    """A retried clean-up, or a $disconnect after a 410's clean-up: the first schedule may be what failed."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ana.disconnect()
    ana.disconnect()
    (first, _), (second, _) = delayed.tasks
    assert first == second
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_a_410s_clean_up_begins_the_grace_too(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, clock: ManualClock
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect()
    gateway.gone.add("ana-1")
    settle(clock)
    ben.ok("conversation:create", {})  # meets ana's 410: forgotten after the reply
    assert graced.connections.get("ana-1") is None
    assert statuses(ben) == [("status:online", "ana")]
    assert len(delayed.tasks) == 1
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_the_sweep_begins_the_grace_too(graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    graced.connections.open("stale", Identity(userId="ghost", companyId="acme"), datetime.now(UTC) - timedelta(hours=5))
    assert invoke("handlers.sweep.handler", {}) == {"swept": 1}
    assert statuses(ben) == []
    run_delayed()
    assert statuses(ben) == [("status:offline", "ghost")]


def test_a_grace_ending_just_before_a_connect_records_it_is_offline_then_online(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()

    @interleaver.before("UpdateItem", "presence#acme", "ana-2")
    def the_grace_ends() -> None:
        run_delayed()

    Peer(gateway, "ana-2", "ana", "acme").connect()
    assert interleaver.fired == ["UpdateItem"]
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana"), ("status:online", "ana")]


def test_a_grace_ending_just_after_a_connect_recorded_it_announces_nothing(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()

    @interleaver.before("GetItem", "conn#ana-2")
    def the_grace_ends() -> None:
        run_delayed()

    Peer(gateway, "ana-2", "ana", "acme").connect()
    assert interleaver.fired == ["GetItem"]
    assert statuses(ben) == [("status:online", "ana")]
    assert "ana" in listed(graced)


def test_a_reconnect_refused_within_the_grace_leaves_its_end_to_announce(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    """ana reconnects within the grace, but that connection's $disconnect came first: refused, and the grace
    still ends in its one announcement."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()
    deliver(lifecycle_event("disconnect", "ana-2", "ana", "acme"))
    response = invoke("handlers.connect.handler", lifecycle_event("connect", "ana-2", "ana", "acme"))
    run_deferred()
    assert response["statusCode"] == 410
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert "ana" not in listed(graced)


@pytest.mark.parametrize("operation", ["UpdateItem", "GetItem"])
def test_a_first_connection_refused_leaves_its_user_absent_and_never_online(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver, operation: str
) -> None:
    """ana's $disconnect lands before her $connect adds her presence (UpdateItem) or before its final check
    (GetItem). Either way she is never announced online nor left present. In the second case the $disconnect
    removed the presence the $connect had added, so it begins a grace whose end repeats an offline her
    colleagues already see: the same as without a grace, where that close announced it at once."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    needle = "presence#acme" if operation == "UpdateItem" else "conn#ana-1"

    @interleaver.before(operation, needle, "ana-1")
    def ana_disconnects() -> None:
        deliver(lifecycle_event("disconnect", "ana-1", "ana", "acme"))

    response = invoke("handlers.connect.handler", lifecycle_event("connect", "ana-1", "ana", "acme"))
    run_deferred()
    assert response["statusCode"] == 410
    assert interleaver.fired == [operation]
    run_delayed()
    assert statuses(ben) == ([] if operation == "UpdateItem" else [("status:offline", "ana")])
    assert "ana" not in listed(graced)
    Peer(gateway, "ana-2", "ana", "acme").connect()
    assert statuses(ben)[-1] == ("status:online", "ana")


def test_a_failed_grace_end_is_reported_for_that_message_alone(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()
    Peer(gateway, "cat-1", "cat", "acme").connect().disconnect()
    real = graced.presence.end_grace

    def failing_for_ana(task: OfflineDue, delivery: str = "") -> bool:
        if task.user_id == "ana":
            raise RuntimeError("DynamoDB is throttling")
        return real(task, delivery)

    monkeypatch.setattr(graced.presence, "end_grace", failing_for_ana)
    result = run_delayed()
    assert len(result["batchItemFailures"]) == 1
    assert listed(graced) == {"ana"}


def test_a_message_that_is_no_task_is_dropped_not_retried(graced: Services) -> None:
    from roomcast_local.testing import sqs_event

    assert invoke("handlers.delayed.handler", sqs_event(["not json", '{"kind": "other"}'])) == {"batchItemFailures": []}


def test_a_reconnect_that_fails_half_way_within_the_grace_leaves_its_end_to_announce(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()

    @interleaver.before("GetItem", "conn#ana-2")
    def throttled() -> None:
        raise RuntimeError("throttled, three times over")

    with pytest.raises(ConnectionFailed, match="throttled"):
        invoke("handlers.connect.handler", lifecycle_event("connect", "ana-2", "ana", "acme"))
    # Its undoing began a grace of its own, whose end is queued: the user is announced once.
    assert len(delayed.tasks) == 2
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert "ana" not in listed(graced)


def test_a_grace_end_that_fails_after_ending_the_grace_still_announces_on_redelivery(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end's conditional write lands, then its announcement fails (the company room's query throttled):
    the message is reported failed and SQS delivers it again. That second delivery must still announce the one
    status:offline owed, not find the grace gone and say nothing."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()
    ((task, _),) = delayed.take()
    message = sqs_event([json.dumps(task.model_dump(by_alias=True, mode="json"))])  # the same message each time

    real = graced.rooms.members

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("throttled")

    monkeypatch.setattr(graced.rooms, "members", throttled)
    assert len(invoke("handlers.delayed.handler", message)["batchItemFailures"]) == 1
    monkeypatch.setattr(graced.rooms, "members", real)
    assert statuses(ben) == [("status:online", "ana")]
    # Redelivered after the visibility timeout, and once more (at-least-once): one offline in all.
    assert invoke("handlers.delayed.handler", message) == {"batchItemFailures": []}
    assert invoke("handlers.delayed.handler", message) == {"batchItemFailures": []}
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert "ana" not in listed(graced)


class FailingDelayer(QueuedDelayer):
    """The delay queue refuses the first `failures` messages (SQS unavailable past botocore's retries)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def delay(self, task: DelayedTask, seconds: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("SQS is unavailable")
        super().delay(task, seconds)


def test_a_grace_that_cannot_be_queued_ends_at_once_rather_than_never(
    graced: Services, gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$disconnect is never retried, and the sweep does not find a connection it closed again: a grace whose end
    could not be queued would keep its user present, and unannounced, for ever."""
    failing = FailingDelayer(failures=1)
    monkeypatch.setattr(graced.presence, "_delayer", failing)
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect()
    invoke("handlers.disconnect.handler", lifecycle_event("disconnect", "ana-1", "ana", "acme"))
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert "ana" not in listed(graced)
    # A reconnect after it is a first connection again, announced.
    Peer(gateway, "ana-2", "ana", "acme").connect()
    assert statuses(ben)[-1] == ("status:online", "ana")


def test_a_sweep_whose_first_grace_cannot_be_queued_still_queues_the_others(
    graced: Services, gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = FailingDelayer(failures=1)
    monkeypatch.setattr(graced.presence, "_delayer", failing)
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    hours_ago = datetime.now(UTC) - timedelta(hours=5)
    for user in ("ghost", "wraith"):
        graced.connections.open(f"{user}-1", Identity(userId=user, companyId="acme"), hours_ago)
    invoke("handlers.sweep.handler", {})
    assert len(failing.tasks) == 1  # one queued, the other announced at once
    assert len(statuses(ben)) == 1
    invoke("handlers.delayed.handler", sqs_event([json.dumps(t.model_dump(by_alias=True)) for t, _ in failing.take()]))
    assert sorted(statuses(ben)) == [("status:offline", "ghost"), ("status:offline", "wraith")]
    assert listed(graced) == {"ben"}


def test_two_copies_of_a_grace_end_delivered_side_by_side_announce_once(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close seen twice queues its grace's end twice (two messages); SQS may hand them to two batches at
    once. The second, running while the first announces, is no redelivery of the first: it says nothing."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ana.disconnect()
    ana.disconnect()
    (first, _), (second, _) = delayed.take()
    assert first == second
    real = graced.rooms.members
    ran: list[dict[str, Any]] = []
    started: list[bool] = []

    def the_other_copy_runs_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not started:
            started.append(True)
            ran.append(invoke("handlers.delayed.handler", sqs_event([json.dumps(second.model_dump(by_alias=True))])))
        return real(*args, **kwargs)

    monkeypatch.setattr(graced.rooms, "members", the_other_copy_runs_meanwhile)
    assert invoke("handlers.delayed.handler", sqs_event([json.dumps(first.model_dump(by_alias=True))])) == {
        "batchItemFailures": []
    }
    assert ran == [{"batchItemFailures": []}]
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


# ---- presence in shards by user (decision 0107) ----


def presence_item(pk: str, user: str) -> dict[str, Any] | None:
    found = boto3.resource("dynamodb").Table("test-connections").get_item(Key={"pk": pk, "sk": user}).get("Item")
    return None if found is None else dict(found)


@pytest.mark.parametrize(("user", "pk"), [("ana", "presence#acme#15"), ("max", "presence#acme")])
def test_the_grace_runs_in_the_users_own_shard(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, user: str, pk: str
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, f"{user}-1", user, "acme").connect().disconnect()
    held = presence_item(pk, user)
    assert held is not None
    assert str(held["offlinePending"]).endswith(GRACE_IN_SHARD) is (pk != "presence#acme")
    assert not held.get("connections")
    assert graced.connections.is_online("acme", user)
    assert user in listed(graced)
    assert statuses(ben) == [("status:online", user)]
    run_delayed()
    assert statuses(ben) == [("status:online", user), ("status:offline", user)]
    assert user not in listed(graced)
    # Its announcement made, the item no longer owes one (`grace_announced`, in the same shard).
    after = presence_item(pk, user)
    assert after is not None
    assert "offlineEnded" not in after


def as_before_the_deploy(user: str, shard_pk: str) -> None:
    """Move the user's presence item to the unsharded key, where the code before decision 0107 wrote it, and take
    the partition's name off the records of its connections, which that code did not write."""
    table = boto3.resource("dynamodb").Table("test-connections")
    item: dict[str, Any] = dict(table.get_item(Key={"pk": shard_pk, "sk": user})["Item"])
    table.delete_item(Key={"pk": shard_pk, "sk": user})
    table.put_item(Item={**item, "pk": "presence#acme"})
    for connection_id in sorted(str(listed) for listed in item.get("connections", set())):
        table.update_item(Key={"pk": f"conn#{connection_id}", "sk": "conn"}, UpdateExpression="REMOVE presence")


def test_a_connection_opened_before_the_deploy_is_listed_closed_and_announced_offline_after_its_grace(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    assert listed(graced) == {"ana", "ben"}
    assert graced.connections.is_online("acme", "ana")
    ana.disconnect()
    # Her shard has no item: the close found her connection in the unsharded key and began the grace there.
    assert presence_item("presence#acme#15", "ana") is None
    pending = (presence_item("presence#acme", "ana") or {}).get("offlinePending")
    assert pending is not None
    assert not pending.endswith(GRACE_IN_SHARD)  # its end goes to the unsharded key too
    assert "ana" in listed(graced)
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert listed(graced) == {"ben"}


def test_a_user_with_items_from_before_and_after_the_deploy_is_listed_once_and_kicked_everywhere(
    graced: Services, gateway: RecordingGateway
) -> None:
    Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    Peer(gateway, "ana-2", "ana", "acme").connect()
    users = graced.connections.online_users("acme", None, 10, 100_000).users
    assert users == [{"userId": "ana", "connections": 2}, {"userId": "ben", "connections": 1}]
    # A kick finds both connections, the one the unsharded key lists too.
    connections, unlisted = graced.connections.of_user("acme", "ana")
    assert sorted(connection.connection_id for connection in connections) == ["ana-1", "ana-2"]
    assert unlisted == []


def test_a_kick_cuts_a_grace_running_in_the_unsharded_key(graced: Services, gateway: RecordingGateway) -> None:
    Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    ana.disconnect()
    assert graced.connections.is_online("acme", "ana")
    assert graced.connections.cut_grace("acme", "ana") is True
    assert not graced.connections.is_online("acme", "ana")
    assert listed(graced) == {"ben"}
    assert graced.connections.cut_grace("acme", "ana") is False


def test_a_reconnect_after_the_deploy_within_a_grace_begun_in_the_unsharded_key_announces_nothing(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    """API Gateway closes a connection from before the deploy and the client comes back at once: its grace runs in
    the unsharded key, the new connection is in the user's shard; the grace's end finds her there."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    ana.disconnect()
    Peer(gateway, "ana-2", "ana", "acme").connect()
    assert presence_item("presence#acme#15", "ana") is not None
    run_delayed()
    assert statuses(ben) == [("status:online", "ana")]  # no second online, no offline
    assert listed(graced) == {"ana", "ben"}
    Peer(gateway, "ana-2", "ana", "acme").disconnect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert listed(graced) == {"ben"}


def test_a_second_connection_after_the_deploy_beside_one_from_before_is_offline_only_after_both(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    laptop = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    phone = Peer(gateway, "ana-2", "ana", "acme").connect()
    assert (presence_item("presence#acme#15", "ana") or {}).get("unshardedOpen") is True
    phone.disconnect()
    run_delayed()  # the phone's grace, in her shard, ends: her laptop is still open in the unsharded key
    assert statuses(ben) == [("status:online", "ana")]
    assert listed(graced) == {"ana", "ben"}
    laptop.disconnect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert listed(graced) == {"ben"}
    # Once no connection from before the deploy is left, her shard's graces stop looking there.
    Peer(gateway, "ana-3", "ana", "acme").connect().disconnect()
    run_delayed()
    assert "unshardedOpen" not in (presence_item("presence#acme#15", "ana") or {})
    assert statuses(ben) == [
        ("status:online", "ana"),
        ("status:offline", "ana"),
        ("status:online", "ana"),
        ("status:offline", "ana"),
    ]


def test_a_connection_after_the_deploy_closed_and_its_grace_over_leaves_one_from_before_online(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    """Review: once a connection after the deploy closed and its grace ended (not announced: her laptop from before
    the deploy is open in the unsharded key), her shard's item is left without connections. She is still online,
    and her next connection is no first one: it announces nothing."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    laptop = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    Peer(gateway, "ana-2", "ana", "acme").connect().disconnect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana")]
    assert graced.connections.is_online("acme", "ana")
    Peer(gateway, "ana-3", "ana", "acme").connect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana")]  # no second online: she never went
    laptop.disconnect()
    Peer(gateway, "ana-3", "ana", "acme").disconnect()
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert listed(graced) == {"ben"}
