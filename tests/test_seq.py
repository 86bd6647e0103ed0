"""docs/protocol.md's `seq` (Actions): gap-free per conversation, assigned with the write, readable in order, and the
cursor that fills a gap exactly, whatever is written concurrently."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from roomcast_local.testing import ManualClock, Peer, RecordingGateway, publish
from shared.stores.conversations import ConversationStore
from shared.stores.sequence import Sequence
from shared.wiring.services import Services
from tests.faults import FaultInjector


@pytest.fixture
def atomic_dynamodb(session: boto3.session.Session) -> None:
    """DynamoDB applies each request atomically; moto does not lock, and a boto3 resource builds its
    expressions in shared state. So each DynamoDB call from the threads is taken whole, one at a time:
    the threads still interleave between calls (read the last seq, write), which is where the races are."""
    lock = threading.Lock()

    def enter(**_: Any) -> None:
        lock.acquire()

    def leave(**_: Any) -> None:
        lock.release()

    session.events.register_first("provide-client-params.dynamodb", enter)
    session.events.register_last("after-call.dynamodb", leave)
    session.events.register_last("after-call-error.dynamodb", leave)


@pytest.fixture
def faults(session: boto3.session.Session) -> FaultInjector:
    return FaultInjector(session)


@pytest.fixture
def room(
    atomic_dynamodb: None, faults: FaultInjector, services: Services, gateway: RecordingGateway
) -> tuple[list[Peer], Peer, str]:
    """Four senders and carl in one conversation. The hooks are registered before the clients are made,
    which copy the session's hooks; every action is a second after the last, inside any rate limit."""
    senders = [Peer(gateway, f"s{i}", f"user{i}", "acme").connect() for i in range(4)]
    carl = Peer(gateway, "carl-1", "carl", "acme").connect()
    conversation = senders[0].ok("conversation:create", {})["conversation"]["id"]
    for peer in [*senders[1:], carl]:
        peer.ok("join:conversation", {"conversationId": conversation})
    gateway.clear()
    return senders, carl, conversation


@pytest.fixture(autouse=True)
def unhurried(clock: ManualClock) -> None:
    clock.set(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), step=1)


def history_after(peer: Peer, conversation: str, after: int) -> list[dict[str, Any]]:
    """Every message after `after`, following nextCursor."""
    found: list[dict[str, Any]] = []
    cursor: int | None = after
    while cursor is not None:
        page = peer.ok("conversation:history", {"conversationId": conversation, "after": cursor, "limit": 7})
        found += page["messages"]
        cursor = page["nextCursor"]
    return found


def test_seq_is_in_message_new_message_sent_the_ack_and_history(
    room: tuple[list[Peer], Peer, str], gateway: RecordingGateway
) -> None:
    (ana, *_), carl, conversation = room
    first = ana.ok("message:send", {"conversationId": conversation, "content": "one"})
    reply = ana.act("message:send", {"conversationId": conversation, "content": "two"}, ack_id=None)
    assert first["seq"] == 1
    assert (reply["event"], reply["data"]["seq"]) == ("message:sent", 2)
    assert [m["data"]["seq"] for m in carl.received("message:new")] == [1, 2]
    assert [m["seq"] for m in history_after(carl, conversation, 0)] == [1, 2]


def test_concurrent_senders_get_gap_free_seqs_and_history_after_any_seq_is_exactly_the_later_ones(
    room: tuple[list[Peer], Peer, str], gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    senders, carl, conversation = room
    per_sender = 8
    # Seqs reserved and not yet filled, at most at once: above one, senders raced between their two calls.
    unfilled, most_unfilled, counting = 0, 0, threading.Lock()
    real_reserve, real_fill = Sequence.reserve, ConversationStore._fill

    def reserve(seqs: Sequence) -> tuple[int, int]:
        nonlocal unfilled, most_unfilled
        reserved = real_reserve(seqs)
        if seqs.prefix == "msg#":  # a seq, not a journal position (decision 0102: the same allocator)
            with counting:
                unfilled += 1
                most_unfilled = max(most_unfilled, unfilled)
        return reserved

    def fill(store: ConversationStore, pk: str, message: Any, sender_key: str | None) -> Any:
        nonlocal unfilled
        try:
            return real_fill(store, pk, message, sender_key)
        finally:
            with counting:
                unfilled -= 1

    monkeypatch.setattr(Sequence, "reserve", reserve)
    monkeypatch.setattr(ConversationStore, "_fill", fill)

    def send_all(peer: Peer) -> list[dict[str, Any]]:
        return [
            peer.ok(
                "message:send",
                {"conversationId": conversation, "content": f"{peer.user_id}-{i}"}
                | ({"clientMessageId": f"{peer.user_id}-{i}"} if i % 2 else {}),
            )
            for i in range(per_sender)
        ]

    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        acks = [ack for acked in pool.map(send_all, senders) for ack in acked]
    # Senders did race: a seq was reserved while another's write was still to come.
    assert most_unfilled > 1

    total = len(senders) * per_sender
    assert sorted(ack["seq"] for ack in acks) == list(range(1, total + 1))
    stored = history_after(carl, conversation, 0)
    assert [m["seq"] for m in stored] == list(range(1, total + 1))
    assert {m["id"]: m["seq"] for m in stored} == {ack["id"]: ack["seq"] for ack in acks}
    # Each sender's own messages keep the order it sent them in.
    for peer in senders:
        mine = [m["content"] for m in stored if m["fromUserId"] == peer.user_id]
        assert mine == [f"{peer.user_id}-{i}" for i in range(per_sender)]
    for seq in range(total + 1):
        assert [m["seq"] for m in history_after(carl, conversation, seq)] == list(range(seq + 1, total + 1))
    # What carl heard live carries the same seqs as history.
    heard = {frame["data"]["id"]: frame["data"]["seq"] for frame in carl.received("message:new")}
    assert heard == {m["id"]: m["seq"] for m in stored}


def test_a_message_stored_while_a_lower_seq_is_unfilled_is_not_readable_until_that_seq_is(
    room: tuple[list[Peer], Peer, str], gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's Y/X interleaving: Y reserves its seq first, X is stored and broadcast, then Y is written.
    Meanwhile history holds X back (Y's lower seq is unfilled) and tells carl, who saw X, to ask again; then he
    fills his gap and gets both."""
    (ana, ben, *_), carl, conversation = room
    y_has_reserved = threading.Event()
    x_is_done = threading.Event()
    real_fill = ConversationStore._fill

    def fill(store: ConversationStore, pk: str, message: Any, sender_key: str | None) -> Any:
        if threading.current_thread().name == "Y" and not y_has_reserved.is_set():
            y_has_reserved.set()
            assert x_is_done.wait(10)
        return real_fill(store, pk, message, sender_key)

    monkeypatch.setattr(ConversationStore, "_fill", fill)
    y_ack: dict[str, Any] = {}
    y = threading.Thread(
        name="Y", target=lambda: y_ack.update(ana.ok("message:send", {"conversationId": conversation, "content": "Y"}))
    )
    y.start()
    assert y_has_reserved.wait(10)
    x_ack = ben.ok("message:send", {"conversationId": conversation, "content": "X"})
    [x_new] = carl.received("message:new")
    assert (x_new["data"]["content"], x_new["data"]["seq"]) == ("X", 2)
    # Seq 1 is reserved, not filled: X is not readable yet, from any cursor or as the newest page. After 0, X is
    # stored above the unfilled seq: the page is empty and says to come back (nextCursor 0); after X, nothing is.
    early = carl.ok("conversation:history", {"conversationId": conversation, "after": 0})
    assert (early["messages"], early["nextCursor"]) == ([], 0)
    assert history_after(carl, conversation, x_ack["seq"]) == []
    assert carl.ok("conversation:history", {"conversationId": conversation})["messages"] == []
    x_is_done.set()
    y.join(10)

    assert y_ack["seq"] == 1
    assert [m["content"] for m in history_after(carl, conversation, 0)] == ["Y", "X"]
    assert [m["content"] for m in carl.ok("conversation:history", {"conversationId": conversation})["messages"]] == [
        "Y",
        "X",
    ]
    assert [m["data"]["seq"] for m in carl.received("message:new")] == [2, 1]


def test_a_retry_that_meets_a_transaction_conflict_answers_the_stored_message(
    room: tuple[list[Peer], Peer, str], gateway: RecordingGateway, faults: FaultInjector
) -> None:
    (ana, *_), carl, conversation = room
    data = {"conversationId": conversation, "content": "once", "clientMessageId": "m-1"}
    first = ana.ok("message:send", data)
    # A concurrent retry of the same send holds the marker: DynamoDB cancels with TransactionConflict.
    faults.fail(
        "TransactWriteItems", times=2, code="TransactionCanceledException", reasons=["TransactionConflict", "None"]
    )
    again = ana.ok("message:send", data)
    assert faults.injected["TransactWriteItems"] == 2
    assert again == first
    assert [m["id"] for m in history_after(carl, conversation, 0)] == [first["id"]]
    assert len(carl.received("message:new")) == 1


def test_a_send_that_meets_a_transaction_conflict_on_its_seq_is_stored_once_at_the_next_free_seq(
    room: tuple[list[Peer], Peer, str], gateway: RecordingGateway, faults: FaultInjector
) -> None:
    (ana, *_), carl, conversation = room
    faults.fail(
        "TransactWriteItems", times=1, code="TransactionCanceledException", reasons=["None", "TransactionConflict"]
    )
    sent = ana.ok("message:send", {"conversationId": conversation, "content": "hi", "clientMessageId": "m-2"})
    assert sent["seq"] == 1
    assert [m["seq"] for m in history_after(carl, conversation, 0)] == [1]


def test_contact_messages_from_the_bus_take_the_next_seq_too(
    room: tuple[list[Peer], Peer, str], gateway: RecordingGateway
) -> None:
    (ana, *_), carl, conversation = room
    ana.ok("message:send", {"conversationId": conversation, "content": "agent"})
    detail = {"companyId": "acme", "conversationId": conversation, "contactId": "ct-1", "content": "contact"}
    assert publish("MessageReceived", detail)["status"] == "applied"
    assert [(m["senderType"], m["seq"]) for m in history_after(carl, conversation, 0)] == [
        ("agent", 1),
        ("contact", 2),
    ]
    assert carl.received("message:new")[-1]["data"]["seq"] == 2


def test_a_write_retried_after_its_answer_was_lost_is_stored_once(
    room: tuple[list[Peer], Peer, str], services: Services
) -> None:
    """botocore resends a request whose answer was lost; the first attempt had been written, so the
    resend meets its own message at that seq and must not take the next one for a second copy."""
    (ana, *_), carl, conversation = room
    resent: list[int] = []

    def lose_the_first_answer(attempts: int, caught_exception: Any, response: Any, **_: Any) -> int | None:
        if not resent and caught_exception is None and response[0].status_code == 200:
            resent.append(attempts)
            return 0
        return None

    events = services.conversations._table.meta.client.meta.events
    events.register("needs-retry.dynamodb.PutItem", lose_the_first_answer)  # type: ignore[arg-type]
    sent = ana.ok("message:send", {"conversationId": conversation, "content": "once"})
    events.unregister("needs-retry.dynamodb.PutItem", lose_the_first_answer)  # type: ignore[arg-type]
    assert resent == [1]
    assert sent["seq"] == 1
    assert [m["id"] for m in history_after(carl, conversation, 0)] == [sent["id"]]


def test_an_agent_whose_id_looks_like_a_contacts_key_does_not_swallow_the_contacts_message(
    services: Services, gateway: RecordingGateway
) -> None:
    agent = Peer(gateway, "a-1", "contact:ct-1", "acme").connect()  # a user id the id pattern allows
    conversation = agent.ok("conversation:create", {})["conversation"]["id"]
    agent.ok("message:send", {"conversationId": conversation, "content": "from the agent", "clientMessageId": "wa-1"})
    detail = {"companyId": "acme", "conversationId": conversation, "contactId": "ct-1", "content": "from the contact"}
    assert publish("MessageReceived", {**detail, "externalId": "wa-1"}) == {"status": "applied"}
    history = agent.ok("conversation:history", {"conversationId": conversation})["messages"]
    assert [message["content"] for message in history] == ["from the agent", "from the contact"]
