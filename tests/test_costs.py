"""What each operation costs in AWS calls: no Scan anywhere, and the counts of the data model."""

from __future__ import annotations

import pytest

from roomcast_local.testing import ManualClock, Peer, QueuedDeferrer, RecordingGateway
from shared.wiring.services import Services
from tests.conftest import CallCounter


def test_no_request_path_scans(services: Services, gateway: RecordingGateway, calls: CallCounter) -> None:
    ana = Peer(gateway, "a", "ana", "acme").connect()
    ben = Peer(gateway, "b", "ben", "acme").connect()
    conversation = ana.ok("conversation:create", {})["conversation"]["id"]
    ben.ok("join:conversation", {"conversationId": conversation})
    sent = ana.ok("message:send", {"conversationId": conversation, "content": "x", "clientMessageId": "1"})
    ana.ok("message:send", {"conversationId": conversation, "content": "x", "clientMessageId": "1"})
    ref = {"conversationId": conversation, "messageId": sent["id"]}
    ana.ok("message:edit", {**ref, "content": "y"})
    ben.ok("conversation:typing", {"conversationId": conversation})
    ben.ok("conversation:history", {"conversationId": conversation, "after": sent["id"]})
    ben.ok("conversation:history", {"conversationId": conversation, "before": sent["id"]})
    ben.ok("conversation:update", {"conversationId": conversation, "status": "closed"})
    ben.ok("presence:list")
    ana.ok("message:delete", ref)
    ben.ok("leave:conversation", {"conversationId": conversation})
    gateway.gone.add("b")
    ana.ok("message:send", {"conversationId": conversation, "content": "z"})
    ana.disconnect()

    assert calls.calls, "the counter saw no calls"
    assert not [name for name in calls.calls if name.endswith(("Scan", "ExecuteStatement"))]


def room_of(size: int, gateway: RecordingGateway) -> tuple[Peer, str]:
    sender = Peer(gateway, "sender", "u-0", "acme").connect()
    conversation = sender.ok("conversation:create", {})["conversation"]["id"]
    for index in range(1, size):
        Peer(gateway, f"c{index}", f"u-{index}", "acme").connect().ok(
            "join:conversation", {"conversationId": conversation}
        )
    return sender, conversation


def test_connect_costs_a_conditional_put_a_batch_write_a_presence_update_and_two_checks(
    services: Services, gateway: RecordingGateway, calls: CallCounter
) -> None:
    Peer(gateway, "a", "ana", "acme").connect()
    calls.reset()
    Peer(gateway, "a2", "ana", "acme").connect()  # not the first: nobody to tell
    # The checks: closed meanwhile (the connection's record), kicked since the handshake (the access item).
    assert calls.calls == {
        "dynamodb.PutItem": 1,
        "dynamodb.BatchWriteItem": 1,
        "dynamodb.UpdateItem": 1,
        "dynamodb.GetItem": 2,
    }


def test_disconnect_costs_a_tombstone_a_batch_delete_and_a_presence_update(
    services: Services, gateway: RecordingGateway, calls: CallCounter
) -> None:
    peer = Peer(gateway, "a", "ana", "acme").connect()
    Peer(gateway, "a2", "ana", "acme").connect()
    peer.ok("conversation:create", {})  # a third room
    calls.reset()
    peer.disconnect()
    assert calls.calls == {"dynamodb.UpdateItem": 2, "dynamodb.BatchWriteItem": 1}


@pytest.mark.parametrize(("with_client_id", "write"), [(False, "PutItem"), (True, "TransactWriteItems")])
def test_send_to_a_room_of_ten_reserves_a_seq_writes_once_and_posts_ten_times(
    services: Services,
    gateway: RecordingGateway,
    calls: CallCounter,
    with_client_id: bool,
    write: str,
    frozen_clock: ManualClock,
    deferred: QueuedDeferrer,
) -> None:
    sender, conversation = room_of(10, gateway)
    deferred.auto = False  # the request's own calls; what it hands off runs later, in another function
    # Half a second later: the sender is idle again for the rate limiter, and metrics were pushed recently.
    frozen_clock.advance(0.5)
    calls.reset()
    gateway.calls = 0
    data = {"conversationId": conversation, "content": "hi"}
    if with_client_id:
        data["clientMessageId"] = "m-1"
    sender.ok("message:send", data)
    # Query: the room; for sessions (decision 0065) the room again, once the event is in the journal (its PutItem).
    # UpdateItem: the rate limiter's admission, the seq's reservation (decision 0087), the journal position's
    # (decision 0102), the message's count claim (only with a clientMessageId: decision 0068) and one analytics
    # counter shard. GetItem: the conversation, and the company's push state, which says no dashboard is open:
    # no push claimed, none handed off (decision 0095).
    journal = {"dynamodb.PutItem": 1} if write == "TransactWriteItems" else {"dynamodb.PutItem": 2}
    assert calls.calls == {
        "dynamodb.GetItem": 2,
        f"dynamodb.{write}": 1,
        **journal,
        "dynamodb.Query": 2,
        "dynamodb.UpdateItem": 5 if with_client_id else 4,
    }
    assert gateway.calls == 10
    assert deferred.tasks == []


@pytest.mark.parametrize("unread", [1, 60])
def test_all_read_costs_one_index_query_and_an_update_per_unread_notification(
    services: Services, gateway: RecordingGateway, calls: CallCounter, unread: int
) -> None:
    from shared.protocol.records import Notification

    peer = Peer(gateway, "a", "ana", "acme").connect()
    for index in range(unread):
        notification = Notification(id=f"n{index:05d}", userId="ana", type="t", title="t", createdAt="t")
        services.notifications.add("acme", notification, source_event=f"e{index}")
    calls.reset()
    assert peer.ok("notification:all_read") == {"count": unread}
    assert calls.calls == {
        # The rate limiter's admission, one per unread notification, and the receipt's journal position.
        "dynamodb.UpdateItem": 2 + unread,
        # The unread index (one page up to 1 MB), then the user's room for the receipt, which is first put in
        # the company journal for sessions (a position reserved, decision 0102, and its PutItem, decision 0065).
        "dynamodb.Query": 2,
        "dynamodb.PutItem": 1,
    }


@pytest.mark.parametrize(("period", "batches"), [("today", 1), ("week", 2), ("month", 5)])
def test_an_analytics_request_is_a_batch_get_per_hundred_shards(
    services: Services, gateway: RecordingGateway, calls: CallCounter, period: str, batches: int
) -> None:
    peer = Peer(gateway, "a", "ana", "acme").connect()
    calls.reset()
    peer.ok("analytics:request", {"period": period})
    # Admission, then every shard of every day: 16, 112, 480 keys, 100 a BatchGetItem (decision 0095).
    assert calls.calls == {"dynamodb.UpdateItem": 1, "dynamodb.BatchGetItem": batches}


def test_the_send_that_pushes_metrics_adds_a_claim_and_a_room_query(
    services: Services,
    gateway: RecordingGateway,
    calls: CallCounter,
    frozen_clock: ManualClock,
) -> None:
    sender, conversation = room_of(10, gateway)
    Peer(gateway, "viewer", "boss", "acme").connect().ok("analytics:subscribe")
    frozen_clock.advance(2)
    calls.reset()
    gateway.calls = 0
    sender.ok("message:send", {"conversationId": conversation, "content": "hi"})
    # Admission, seq, journal position, counter shard and push claim UpdateItems; the conversation's
    # and the push state's GetItem; today's shards in one BatchGetItem; the room's and the analytics room's Query,
    # and the room again for sessions (with the journal's PutItem; metrics:update is volatile, not journaled);
    # 10 + 1 posts.
    assert calls.calls == {
        "dynamodb.GetItem": 2,
        "dynamodb.BatchGetItem": 1,
        "dynamodb.PutItem": 2,
        "dynamodb.Query": 3,
        "dynamodb.UpdateItem": 5,
    }
    assert gateway.calls == 11
