"""Socket.IO connections through the handlers (docs/socketio.md): the codec stored with the connection and its
memberships, fan-out encoded once per codec, namespaces opened and left, the open packet after $connect,
and the heartbeat reaching only the connections that are due."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from roomcast_local.testing import (
    ManualClock,
    Peer,
    QueuedDeferrer,
    RecordingGateway,
    SocketIoPeer,
    invoke,
    load_event,
    message_event,
    run_deferred,
    run_heartbeat,
)
from shared.delivery.deferred import SessionOpened
from shared.delivery.hub import FIRST_POST_WAIT_SECONDS, Hub
from shared.delivery.management_api import Delivery
from shared.protocol import socketio
from shared.protocol.codec import Codec, codec_of
from shared.protocol.identity import Identity
from shared.protocol.records import Conversation
from shared.protocol.rooms import company_room
from shared.stores.dynamo import Table
from shared.stores.rooms import COMPANY_ROOM_SHARDS, RoomReader, room_partitions
from shared.wiring.services import Services
from shared.wiring.settings import settings
from shared.wiring.socketio_app import post_open_packet
from tests.conftest import TABLE_NAMES, CallCounter, make_token, settle

CONVERSATIONS = "/conversations"


def opened(peer: SocketIoPeer, *namespaces: str) -> SocketIoPeer:
    for namespace in namespaces:
        assert peer.send(f"40{namespace},") == socketio.connected(namespace, f"{peer.connection_id}{namespace}")
    return peer


def event_of(text: str) -> tuple[str, str, Any]:
    """(namespace, event, data) of a Socket.IO EVENT text."""
    packet = socketio.parse(text, 1 << 20)
    assert isinstance(packet, socketio.Packet)
    assert packet.type is socketio.PacketType.EVENT
    name, data = packet.data
    return packet.namespace, name, data


def ack_of(text: str | None) -> tuple[int | None, Any]:
    packet = socketio.parse(text, 1 << 20)
    assert isinstance(packet, socketio.Packet)
    assert packet.type is socketio.PacketType.ACK
    return packet.ack_id, packet.data[0]


def items(pk: str) -> list[dict[str, Any]]:
    """The items under `pk`; for a room, in every partition its memberships are spread over."""
    table = boto3.resource("dynamodb").Table(TABLE_NAMES["ConnectionsTable"])
    return [
        item
        for part in room_partitions(pk)
        for item in table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": part})["Items"]
    ]


def test_the_codec_is_stored_with_the_record_and_every_membership(
    services: Services, gateway: RecordingGateway
) -> None:
    opened(SocketIoPeer(gateway, "sio-1", "ana", "acme").connect(), CONVERSATIONS)
    Peer(gateway, "native-1", "ben", "acme").connect()
    conversation = "c-1"
    services.conversations.create(Conversation(id=conversation, companyId="acme", createdAt="t", updatedAt="t"))
    sio = SocketIoPeer(gateway, "sio-1", "ana", "acme")
    assert ack_of(sio.send(f'42{CONVERSATIONS},7["join:conversation","{conversation}"]'))[1]["ok"] is True

    for pk in ("room#acme#company:acme", "room#acme#conversation:c-1", "room#acme#user:ana"):
        codecs = {item["sk"]: item.get("codec") for item in items(pk)}
        assert codecs.get("sio-1") == "socketio"
    assert {item["sk"]: item.get("codec") for item in items("room#acme#company:acme")}["native-1"] is None
    members = [member for page in services.rooms.members("acme", company_room("acme")) for member in page]
    assert {(member.connection_id, member.codec) for member in members} == {
        ("sio-1", Codec.SOCKETIO),
        ("native-1", Codec.NATIVE),
    }


def test_a_mixed_room_hears_each_event_in_its_own_encoding_with_one_query_per_partition(
    services: Services, gateway: RecordingGateway, calls: CallCounter
) -> None:
    native = Peer(gateway, "native-1", "ana", "acme").connect()
    sio = [opened(SocketIoPeer(gateway, f"sio-{n}", f"u-{n}", "acme").connect(), CONVERSATIONS) for n in range(3)]
    gateway.clear()
    calls.reset()
    posts_before = gateway.calls
    services.hub.emit(
        "acme", company_room("acme"), {"event": "campaign:started", "namespace": CONVERSATIONS, "data": {"x": 1}}
    )

    assert native.received("campaign:started")[0]["data"] == {"x": 1}
    for peer in sio:
        assert [event_of(text) for text in peer.pushed()] == [(CONVERSATIONS, "campaign:started", {"x": 1})]
    # The members' codecs came with the membership query of each of the company room's partitions (decision
    # 0096): no read per recipient. The UpdateItem (its position, decision 0102) and the PutItem record the event
    # in the company journal for sessions (decision 0065), whatever the room's size.
    assert dict(calls.calls) == {"dynamodb.Query": COMPANY_ROOM_SHARDS, "dynamodb.UpdateItem": 1, "dynamodb.PutItem": 1}
    assert gateway.calls - posts_before == 4


def test_emits_are_answered_in_the_namespace_emitted_in_with_acks_or_reply_events(
    services: Services, gateway: RecordingGateway
) -> None:
    ana = opened(SocketIoPeer(gateway, "sio-1", "ana", "acme").connect(), CONVERSATIONS, "/analytics")
    ack_id, result = ack_of(ana.send('42/analytics,5["ping"]'))
    assert ack_id == 5
    assert result["ok"] is True
    reply = ana.send('42/analytics,["analytics:request","today"]')
    assert reply is not None
    namespace, name, data = event_of(reply)
    assert (namespace, name, data["period"]) == ("/analytics", "analytics:update", "today")
    _, refused = ack_of(ana.send(f'42{CONVERSATIONS},9["join:conversation","c-missing"]'))
    assert refused == {"ok": False, "error": {"code": "not_found", "message": refused["error"]["message"]}}


def test_a_namespace_must_be_opened_and_leaving_one_leaves_only_it(
    services: Services, gateway: RecordingGateway
) -> None:
    ana = SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    _, result = ack_of(ana.send('42/notifications,1["notification:all_read"]'))
    assert result["error"]["code"] == "bad_request"
    opened(ana, "/notifications", "/analytics")
    assert ack_of(ana.send('42/notifications,2["notification:all_read"]'))[1]["ok"] is True
    assert ana.send("41/analytics,") is None
    assert ack_of(ana.send('42/analytics,3["ping"]'))[1]["error"]["code"] == "bad_request"
    assert ack_of(ana.send('42/notifications,4["ping"]'))[1]["ok"] is True
    assert ana.send("40/random,") == '44/random,{"message":"Invalid namespace"}'


def test_a_pong_costs_no_call_at_all(services: Services, gateway: RecordingGateway, calls: CallCounter) -> None:
    ana = SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    calls.reset()
    assert ana.send("3") is None
    assert dict(calls.calls) == {}
    assert ana.send("2probe") == "3probe"


def test_an_expired_token_closes_with_the_reason_in_socketio(services: Services, gateway: RecordingGateway) -> None:
    expired = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    ana = SocketIoPeer(gateway, "sio-1", "ana", "acme", exp=expired).connect()
    gateway.clear()
    assert ana.send(f'42{CONVERSATIONS},["ping"]') is None
    assert len(ana.pushed()) == 1
    namespace, name, data = event_of(ana.pushed()[0])
    assert (namespace, name, data["code"]) == (CONVERSATIONS, "error", "token_expired")
    assert gateway.closed == ["sio-1"]


def test_the_open_packet_follows_connect_and_only_then_the_heartbeat_reaches_it(
    services: Services, gateway: RecordingGateway, deferred: QueuedDeferrer
) -> None:
    deferred.auto = False
    SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    Peer(gateway, "native-1", "ben", "acme").connect()
    assert isinstance(deferred.tasks[0], SessionOpened)
    assert run_heartbeat() == 0

    run_deferred()
    handshake = gateway.texts["sio-1"][0]
    assert handshake.startswith("0")
    assert json.loads(handshake[1:]) == {
        "sid": "sio-1",
        "upgrades": [],
        "pingInterval": settings().socketio_ping_interval_seconds * 1000,
        "pingTimeout": settings().socketio_ping_timeout_seconds * 1000,
        "maxPayload": settings().limits.max_frame_bytes,
    }
    assert run_heartbeat() == 1
    assert gateway.texts["sio-1"][-1] == "2"
    assert "native-1" not in gateway.texts

    SocketIoPeer(gateway, "sio-1", "ana", "acme").disconnect()
    assert run_heartbeat() == 0


class GoneUntil:
    """@connections that answers 410 for the first `gone` posts, as it does until $connect returns."""

    def __init__(self, gone: int) -> None:
        self.gone = gone
        self.posts = 0

    def post_many(self, connection_ids: Any, _data: bytes) -> list[Delivery]:
        self.posts += 1
        return [Delivery.GONE if self.posts <= self.gone else Delivery.DELIVERED for _ in connection_ids]

    def close(self, _connection_id: str) -> None:
        raise AssertionError("not closed")


class PausingClock(ManualClock):
    """Records every wait, which takes no time."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        super().sleep(seconds)

    def waited(self, since: datetime) -> float:
        return (self.now() - since).total_seconds()


def test_the_open_packet_is_retried_while_connect_runs_and_given_up_when_the_client_would(aws: None) -> None:
    rooms = RoomReader(Table(boto3.client("dynamodb"), TABLE_NAMES["ConnectionsTable"]))
    clock = PausingClock()
    start = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    clock.set(start)

    early = GoneUntil(gone=3)
    hub = Hub(rooms, early, QueuedDeferrer(), 1 << 17, clock)
    assert post_open_packet(hub, "c", settings(), lambda: False) is Delivery.DELIVERED
    assert early.posts == 4
    assert clock.pauses == [0.005, 0.01, 0.02]

    never = GoneUntil(gone=10**6)
    handed_off = QueuedDeferrer()
    clock.set(start)
    hub = Hub(rooms, never, handed_off, 1 << 17, clock)
    assert post_open_packet(hub, "c", settings(), lambda: False) is Delivery.GONE
    assert clock.waited(start) <= FIRST_POST_WAIT_SECONDS
    assert clock.waited(start) > FIRST_POST_WAIT_SECONDS - 0.2
    assert handed_off.tasks == []  # a 410 during $connect proves nothing: no clean-up is handed off

    # A client that left at once: its closed record ends the wait within about a second, not twenty.
    clock.set(start)
    assert post_open_packet(hub, "c", settings(), lambda: True) is Delivery.GONE
    assert clock.waited(start) < 1.5


def test_the_codec_comes_from_the_handshake_query_never_from_a_claim() -> None:
    identity = Identity.model_validate({"userId": "u", "companyId": "c"})
    assert "codec" not in identity.authorizer_context()
    sio = identity.model_copy(update={"codec": codec_of({"EIO": "4", "transport": "websocket"})})
    assert sio.authorizer_context()["codec"] == "socketio"


@pytest.mark.parametrize(("query", "codec"), [({"EIO": "4", "token": "t"}, "socketio"), ({"token": "t"}, None)])
def test_the_authorizer_names_the_codec_in_its_context(aws: None, query: dict[str, str], codec: str | None) -> None:
    event = load_event("authorizer")
    token = make_token({"userId": "u-1", "companyId": "acme", "codec": "a-claim"})
    event["queryStringParameters"] = {**query, "token": token}
    result = invoke("handlers.authorizer.handler", event)
    assert result["context"].get("codec") == codec


def test_a_namespace_opened_after_the_close_recreates_nothing(services: Services, gateway: RecordingGateway) -> None:
    ana = SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    ana.disconnect()
    answer = ana.send(f"40{CONVERSATIONS},")
    assert answer is not None
    assert event_of(answer)[1:] == ("error", {"code": "conflict", "message": "connection is closed"})
    (record,) = items("conn#sio-1")
    assert "closedAt" in record
    assert "namespaces" not in record


def test_an_open_packet_delivered_after_the_close_starts_no_heartbeat(
    services: Services, gateway: RecordingGateway, deferred: QueuedDeferrer
) -> None:
    deferred.auto = False
    ana = SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    ana.disconnect()
    run_deferred()  # the open packet's task runs after $disconnect (the stand-in delivers it anyway)
    assert "heartbeat" not in items("conn#sio-1")[0]
    assert run_heartbeat() == 0


def test_a_heartbeat_entry_left_by_a_close_in_between_is_forgotten_on_its_410(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    (bucket,) = {item["heartbeat"] for item in items("conn#sio-1")}
    entry = items(str(bucket))[0]
    # The close ran between start_session's two writes: it removed nothing, and the entry came after it.
    services.connections.close("sio-1", clock.now())
    boto3.resource("dynamodb").Table(TABLE_NAMES["ConnectionsTable"]).put_item(Item=entry)
    gateway.gone.add("sio-1")
    settle(clock)
    assert run_heartbeat() == 1
    run_deferred()
    assert items(str(bucket)) == []


def test_a_store_failure_on_connect_answers_internal_without_detail(
    services: Services, gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()

    def broken(_connection_id: str, _namespace: str) -> None:
        raise RuntimeError("table roomcast-connections is throttled")

    monkeypatch.setattr(services.connections, "open_namespace", broken)
    answer = ana.send(f"40{CONVERSATIONS},")
    assert answer is not None
    assert event_of(answer)[1:] == ("error", {"code": "internal", "message": "internal error, try again later"})


def test_a_binary_frame_that_is_not_utf8_is_a_refused_and_counted_message(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    peer = SocketIoPeer(gateway, "sio-1", "ana", "acme").connect()
    clock.set(clock.now())  # one burst, whatever the test's pace

    def binary(payload: bytes) -> str | None:
        event = peer._socketio(message_event("sio-1", "ana", "acme", ""))
        event["requestContext"]["routeKey"] = "$default"
        event["body"] = base64.b64encode(payload).decode()
        event["isBase64Encoded"] = True
        response = invoke("handlers.default.handler", event)
        assert response["statusCode"] == 200, response
        body: str | None = response.get("body")
        return body

    answers = [binary(b"\xff\xfe not utf-8") for _ in range(40)]
    assert {event_of(answer)[1] for answer in answers if answer} == {"error"}
    assert {event_of(answer)[2]["code"] for answer in answers if answer} == {"bad_request"}
    assert event_of(binary(b"\xc3\x28") or "")[2]["code"] == "rate_limited"  # counted, like any other frame


def test_a_pong_after_the_token_expired_closes_the_connection_with_the_reason(
    services: Services, gateway: RecordingGateway
) -> None:
    """Pongs keep API Gateway's idle timer from ever closing a Socket.IO connection: they must not keep an
    expired token connected either."""
    expired = int(datetime.now(UTC).timestamp()) - 60
    peer = SocketIoPeer(gateway, "sio-old", "ana", "acme", exp=expired).connect()
    fresh = SocketIoPeer(gateway, "sio-new", "ben", "acme", exp=expired + 3600).connect()
    assert peer.send("3") is None
    assert gateway.closed == ["sio-old"]
    assert "token_expired" in peer.pushed()[-1]
    assert fresh.send("3") is None
    assert gateway.closed == ["sio-old"]
