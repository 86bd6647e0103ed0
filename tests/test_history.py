"""conversation:history: ordered pages, cursors both ways, limits, and frames that always fit."""

from __future__ import annotations

import json

import pytest

from roomcast_local.testing import Peer, RecordingGateway
from shared.wiring.services import Services
from tests.conftest import CallCounter


@pytest.fixture
def chat(services: Services, gateway: RecordingGateway) -> tuple[Peer, str, list[str]]:
    peer = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = peer.ok("conversation:create", {})["conversation"]["id"]
    ids = [peer.ok("message:send", {"conversationId": conversation, "content": f"m{i}"})["id"] for i in range(25)]
    return peer, conversation, ids


def page(peer: Peer, conversation: str, **cursor: object) -> tuple[list[str], int | None]:
    result = peer.ok("conversation:history", {"conversationId": conversation, **cursor})
    return [m["id"] for m in result["messages"]], result["nextCursor"]


def test_message_ids_sort_by_creation_and_seqs_count_from_one(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    assert ids == sorted(ids)
    history = peer.ok("conversation:history", {"conversationId": conversation, "limit": 100})["messages"]
    assert [m["seq"] for m in history] == list(range(1, 26))


def test_the_latest_page_comes_oldest_first_with_a_cursor_backwards(
    chat: tuple[Peer, str, list[str]],
) -> None:
    peer, conversation, ids = chat
    found, cursor = page(peer, conversation, limit=10)
    assert found == ids[15:]
    assert cursor == 16  # the seq of ids[15]


def test_paging_backwards_with_before_reaches_the_start_without_gaps(
    chat: tuple[Peer, str, list[str]],
) -> None:
    peer, conversation, ids = chat
    seen: list[str] = []
    cursor: int | None = None
    while True:
        found, cursor = page(peer, conversation, limit=10, **({"before": cursor} if cursor else {}))
        seen = found + seen
        if cursor is None:
            break
    assert seen == ids


def test_after_fills_the_gap_since_the_last_seq_seen(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    found, cursor = page(peer, conversation, after=5, limit=10)
    assert found == ids[5:15]
    assert cursor == 15
    rest, end = page(peer, conversation, after=cursor, limit=100)
    assert rest == ids[15:]
    assert end is None


def test_message_ids_remain_accepted_as_cursors(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    assert page(peer, conversation, after=ids[4], limit=10) == page(peer, conversation, after=5, limit=10)
    assert page(peer, conversation, before=ids[20], limit=3) == page(peer, conversation, before=21, limit=3)


def test_after_and_before_bound_a_range(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    found, cursor = page(peer, conversation, after=3, before=9)
    assert found == ids[3:8]
    assert cursor is None
    assert page(peer, conversation, after=3, before=4) == ([], None)


@pytest.mark.parametrize(("after", "before"), [(9, 3), (5, 5), ("000000000009ab", "000000000003ab")])
def test_after_past_before_is_a_bad_request_that_never_reaches_dynamodb(
    chat: tuple[Peer, str, list[str]], calls: CallCounter, after: object, before: object
) -> None:
    peer, conversation, _ = chat
    calls.reset()
    data = {"conversationId": conversation, "after": after, "before": before}
    assert peer.error("conversation:history", data) == "bad_request"
    assert calls.calls["dynamodb.Query"] == 0
    assert calls.calls["dynamodb.GetItem"] == 0


@pytest.mark.parametrize("cursor", ["not-a-message-id", -1, 10**12, True, 2.5])
def test_cursors_that_are_neither_a_seq_nor_a_message_id_are_bad_requests(
    chat: tuple[Peer, str, list[str]], cursor: object
) -> None:
    peer, conversation, _ = chat
    for side in ("after", "before"):
        assert peer.error("conversation:history", {"conversationId": conversation, side: cursor}) == "bad_request"


def test_nothing_after_the_newest(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    assert page(peer, conversation, after=ids[-1]) == ([], None)


@pytest.mark.parametrize("limit", [0, 101, -1, "10", 2.5])
def test_limit_must_be_1_to_100(chat: tuple[Peer, str, list[str]], limit: object) -> None:
    peer, conversation, _ = chat
    assert peer.error("conversation:history", {"conversationId": conversation, "limit": limit}) == "bad_request"


def test_a_page_of_large_messages_is_cut_to_fit_an_outbound_frame(
    services: Services, gateway: RecordingGateway
) -> None:
    peer = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = peer.ok("conversation:create", {})["conversation"]["id"]
    big = "x" * 16 * 1024
    ids = [peer.ok("message:send", {"conversationId": conversation, "content": big})["id"] for _ in range(12)]

    reply = peer.act("conversation:history", {"conversationId": conversation, "limit": 100}, ack_id="h")

    found = [m["id"] for m in reply["data"]["messages"]]
    assert 0 < len(found) < 12
    assert found == ids[-len(found) :]
    assert reply["data"]["nextCursor"] == reply["data"]["messages"][0]["seq"]
    assert len(json.dumps(reply, ensure_ascii=False).encode()) <= 128 * 1024
    older, _ = page(peer, conversation, before=reply["data"]["nextCursor"], limit=100)
    assert older + found == ids[-len(older + found) :]
