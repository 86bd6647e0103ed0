"""conversation:history: ordered pages, cursors both ways, limits, and frames that always fit."""

from __future__ import annotations

import json

import pytest

from shared.runtime import Services
from tests.fakes import RecordingGateway
from tests.support import Peer


@pytest.fixture
def chat(services: Services, gateway: RecordingGateway) -> tuple[Peer, str, list[str]]:
    peer = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = peer.ok("conversation:create", {})["conversation"]["id"]
    ids = [peer.ok("message:send", {"conversationId": conversation, "content": f"m{i}"})["id"] for i in range(25)]
    return peer, conversation, ids


def page(peer: Peer, conversation: str, **cursor: object) -> tuple[list[str], str | None]:
    result = peer.ok("conversation:history", {"conversationId": conversation, **cursor})
    return [m["id"] for m in result["messages"]], result["nextCursor"]


def test_message_ids_sort_by_creation(chat: tuple[Peer, str, list[str]]) -> None:
    _, _, ids = chat
    assert ids == sorted(ids)


def test_the_latest_page_comes_oldest_first_with_a_cursor_backwards(
    chat: tuple[Peer, str, list[str]],
) -> None:
    peer, conversation, ids = chat
    found, cursor = page(peer, conversation, limit=10)
    assert found == ids[15:]
    assert cursor == ids[15]


def test_paging_backwards_with_before_reaches_the_start_without_gaps(
    chat: tuple[Peer, str, list[str]],
) -> None:
    peer, conversation, ids = chat
    seen: list[str] = []
    cursor: str | None = None
    while True:
        found, cursor = page(peer, conversation, limit=10, **({"before": cursor} if cursor else {}))
        seen = found + seen
        if cursor is None:
            break
    assert seen == ids


def test_after_fills_the_gap_since_the_last_id_seen(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    found, cursor = page(peer, conversation, after=ids[4], limit=10)
    assert found == ids[5:15]
    assert cursor == ids[14]
    rest, end = page(peer, conversation, after=cursor, limit=100)
    assert rest == ids[15:]
    assert end is None


def test_after_and_before_bound_a_range(chat: tuple[Peer, str, list[str]]) -> None:
    peer, conversation, ids = chat
    found, cursor = page(peer, conversation, after=ids[2], before=ids[8])
    assert found == ids[3:8]
    assert cursor is None


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
    assert reply["data"]["nextCursor"] == found[0]
    assert len(json.dumps(reply, ensure_ascii=False).encode()) <= 128 * 1024
    older, _ = page(peer, conversation, before=found[0], limit=100)
    assert older + found == ids[-len(older + found) :]
