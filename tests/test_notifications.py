"""The /notifications namespace: a user's own notifications, unread counts, read receipts on every connection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from roomcast_local.testing import Peer, RecordingGateway, publish
from shared.wiring.services import Services


def notify(user: str, title: str, company: str = "acme", **extra: object) -> None:
    detail = {"companyId": company, "userId": user, "type": "task", "title": title, **extra}
    assert publish("Notify", detail) == {"status": "applied"}


@pytest.fixture
def ana(services: Services, gateway: RecordingGateway) -> Peer:
    return Peer(gateway, "ana-laptop", "ana", "acme").connect()


@pytest.fixture
def ana_phone(services: Services, gateway: RecordingGateway) -> Peer:
    return Peer(gateway, "ana-phone", "ana", "acme").connect()


def test_an_empty_inbox(ana: Peer) -> None:
    assert ana.ok("notification:list") == {"notifications": [], "unreadCount": 0, "nextCursor": None}
    reply = ana.act("notification:list", ack_id=None)
    assert reply["event"] == "notification:list"
    assert reply["namespace"] == "/notifications"


def test_new_notifications_reach_every_connection_of_their_user_only(
    ana: Peer, ana_phone: Peer, gateway: RecordingGateway
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    namesake = Peer(gateway, "other-ana", "ana", "globex").connect()

    notify("ana", "Call Globex back", body="in 15 minutes", data={"taskId": "t-1"})

    for peer in (ana, ana_phone):
        (pushed,) = peer.received("notification:new")
        assert pushed["namespace"] == "/notifications"
        notification = pushed["data"]["notification"]
        assert notification["title"] == "Call Globex back"
        assert notification["body"] == "in 15 minutes"
        assert notification["data"] == {"taskId": "t-1"}
        assert "readAt" not in notification
    assert ben.received() == []
    assert namesake.received() == []
    assert namesake.ok("notification:list")["notifications"] == []


def test_list_is_newest_first_pages_with_a_cursor_and_counts_unread(ana: Peer) -> None:
    for index in range(5):
        notify("ana", f"n{index}")
    first = ana.ok("notification:list", {"limit": 2})
    assert [n["title"] for n in first["notifications"]] == ["n4", "n3"]
    assert first["unreadCount"] == 5
    second = ana.ok("notification:list", {"limit": 2, "cursor": first["nextCursor"]})
    assert [n["title"] for n in second["notifications"]] == ["n2", "n1"]
    last = ana.ok("notification:list", {"limit": 2, "cursor": second["nextCursor"]})
    assert [n["title"] for n in last["notifications"]] == ["n0"]
    assert last["nextCursor"] is None


def test_read_tells_every_connection_and_only_the_owner_can(
    ana: Peer, ana_phone: Peer, gateway: RecordingGateway
) -> None:
    notify("ana", "first")
    notify("ana", "second")
    listed = ana.ok("notification:list")["notifications"]
    target = listed[0]["id"]
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    assert ben.error("notification:read", {"notificationId": target}) == "not_found"
    stranger = Peer(gateway, "gus-1", "ana", "globex").connect()
    assert stranger.error("notification:read", {"notificationId": target}) == "not_found"

    receipt = ana.ok("notification:read", {"notificationId": target})

    assert receipt["id"] == target
    assert receipt["readAt"].endswith("Z")
    for peer in (ana, ana_phone):
        assert [f["data"] for f in peer.received("notification:read")] == [receipt]
    after = ana.ok("notification:list")
    assert after["unreadCount"] == 1
    assert [n["id"] for n in ana.ok("notification:list", {"unreadOnly": True})["notifications"]] == [listed[1]["id"]]
    assert ana.ok("notification:read", {"notificationId": target}) == receipt  # the first readAt stays
    assert ana.error("notification:read", {"notificationId": "missing"}) == "not_found"


def test_all_read_marks_every_unread_one_and_says_how_many(ana: Peer, ana_phone: Peer) -> None:
    for index in range(40):  # more than one BatchWriteItem of 25
        notify("ana", f"n{index}")
    ana.ok("notification:read", {"notificationId": ana.ok("notification:list", {"limit": 1})["notifications"][0]["id"]})

    assert ana.ok("notification:all_read") == {"count": 39}

    for peer in (ana, ana_phone):
        assert [f["data"] for f in peer.received("notification:all_read")] == [{"count": 39}]
    assert ana.ok("notification:list", {"unreadOnly": True}) == {
        "notifications": [],
        "unreadCount": 0,
        "nextCursor": None,
    }
    assert all("readAt" in n for n in ana.ok("notification:list", {"limit": 100})["notifications"])
    assert ana.ok("notification:all_read") == {"count": 0}


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("notification:list", {"limit": 0}),
        ("notification:list", {"limit": 101}),
        ("notification:list", {"unreadOnly": "yes"}),
        ("notification:list", {"cursor": "not a cursor"}),
        ("notification:list", {"page": 2}),
        ("notification:read", {}),
        ("notification:read", {"notificationId": 5}),
        ("notification:all_read", {"everything": True}),
    ],
)
def test_bad_input_is_a_bad_request(ana: Peer, action: str, data: dict[str, object]) -> None:
    assert ana.error(action, data) == "bad_request"


@pytest.mark.parametrize("unread_only", [False, True])
def test_a_list_of_large_notifications_is_paged_by_size_and_the_cursor_continues_exactly(
    ana: Peer, unread_only: bool
) -> None:
    for index in range(40):
        notify("ana", f"n{index:02d}", body="é" * 4096, data={"index": index})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        data: dict[str, object] = {"limit": 40, "unreadOnly": unread_only} | ({"cursor": cursor} if cursor else {})
        reply = ana.act("notification:list", data, ack_id="x" * 64)
        assert len(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()) <= 128 * 1024
        seen += [n["title"] for n in reply["data"]["notifications"]]
        cursor = reply["data"]["nextCursor"]
        pages += 1
        if cursor is None:
            break
    assert pages > 1
    assert seen == [f"n{index:02d}" for index in reversed(range(40))]


def test_all_read_updates_only_what_is_still_unread_whatever_the_index_copy_says(
    ana: Peer, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unread index is eventually consistent: its copy of a notification read a moment ago may still
    show it unread. all_read must neither count it again nor overwrite its readAt or its other fields."""
    notify("ana", "first")
    notify("ana", "second")
    table = services.notifications._table
    stale = table.query(IndexName="unread", KeyConditionExpression=Key("unread").eq("user#acme#ana"))
    first = next(n for n in ana.ok("notification:list")["notifications"] if n["title"] == "first")
    read_at = ana.ok("notification:read", {"notificationId": first["id"]})["readAt"]

    real_query = table.query

    def lagging_index(**query: Any) -> Any:
        return stale if query.get("IndexName") == "unread" else real_query(**query)

    monkeypatch.setattr(table, "query", lagging_index)
    assert ana.ok("notification:all_read") == {"count": 1}
    monkeypatch.undo()

    listed = {n["title"]: n for n in ana.ok("notification:list")["notifications"]}
    assert listed["first"]["readAt"] == read_at
    assert "readAt" in listed["second"]
    assert ana.ok("notification:list", {"unreadOnly": True})["notifications"] == []


def test_data_is_listed_exactly_as_it_was_pushed(ana: Peer) -> None:
    """Numbers keep their type and size: no Decimal strings, floats and numbers past DynamoDB's 38 digits too."""
    data = {"n": 5, "amount": 1.5, "big": 10**40, "nested": {"list": [1, 2.25, "x", None, True]}}
    notify("ana", "Deal won", data=data)
    (pushed,) = ana.received("notification:new")
    (listed,) = ana.ok("notification:list")["notifications"]
    assert pushed["data"]["notification"]["data"] == data
    assert listed["data"] == data
    assert json.dumps(listed["data"]) == json.dumps(data)
    assert ana.ok("notification:read", {"notificationId": listed["id"]})["id"] == listed["id"]
