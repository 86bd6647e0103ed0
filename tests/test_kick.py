"""Kick and revoke (docs/protocol.md, decisions 0061 and 0062): `Disconnect` and `RevokeTokens` end every
connection of one user in one company, told why, announced offline at once; a revocation refuses older tokens
at the handshake (one read) and at auth:refresh; nobody else is touched, and a $connect running beside a kick
cannot outlive it."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from roomcast_local.testing import (
    Peer,
    QueuedDeferrer,
    QueuedDelayer,
    RecordingGateway,
    SocketIoPeer,
    invoke,
    lifecycle_event,
    load_event,
    publish,
    run_deferred,
    run_delayed,
)
from shared.delivery.deferred import ConnectionsGone
from shared.domain.access import farewell
from shared.domain.presence import ended_since
from shared.protocol.clock import iso as clock_iso
from shared.protocol.codec import Codec
from shared.protocol.identity import SESSIONS_ENDED_AT
from shared.stores.access import Access, AccessStore
from shared.stores.dynamo import Table
from shared.wiring.services import Services
from shared.wiring.settings import settings
from tests.conftest import CallCounter, Interleaver, make_token

AUTHORIZER = "handlers.authorizer.handler"
NOW = datetime.now(UTC)


def statuses(peer: Peer) -> list[tuple[str, str]]:
    frames = [frame for frame in peer.received() if frame["event"].startswith("status:")]
    return [(frame["event"], frame["data"]["userId"]) for frame in frames]


def handshake(token: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("authorizer"))
    event["queryStringParameters"] = {"token": token}
    event.pop("multiValueQueryStringParameters", None)
    result: dict[str, Any] = invoke(AUTHORIZER, event)
    return result


def allowed(policy: dict[str, Any]) -> bool:
    return bool(policy["policyDocument"]["Statement"][0]["Effect"] == "Allow")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def connect_with_context(
    connection_id: str, seen: datetime | None, user_id: str = "ana", exp: int | None = None
) -> int:
    """$connect with the context an authorizer gave: `seen` is the access marker it read at the handshake."""
    event = lifecycle_event("connect", connection_id, user_id, "acme", exp)
    if seen is not None:
        event["requestContext"]["authorizer"][SESSIONS_ENDED_AT] = clock_iso(seen)
    status: int = invoke("handlers.connect.handler", event)["statusCode"]
    run_deferred()
    return status


def reconnect(services: Services, connection_id: str, exp: int | None = None) -> None:
    """ana connects after her kick: her handshake read the marker the kick wrote."""
    assert connect_with_context(connection_id, services.access.read("acme", "ana").sessions_ended_at, exp=exp) == 200


# ---- pure decisions ----


def test_a_revocation_refuses_tokens_issued_before_it_or_without_iat() -> None:
    cut = datetime(2026, 11, 26, 3, 44, 21, tzinfo=UTC)
    revoked = Access(revoked_before=cut)
    assert revoked.refuses(None)
    assert revoked.refuses(int(cut.timestamp()) - 1)
    assert not revoked.refuses(int(cut.timestamp()))
    assert not Access().refuses(None)


def test_a_connection_is_ended_by_a_kick_its_handshake_did_not_see() -> None:
    earlier, later = NOW - timedelta(minutes=1), NOW
    assert not ended_since(None, None)
    assert ended_since(None, later)
    assert ended_since(earlier, later)
    assert not ended_since(later, later)


def test_what_a_connection_is_told_before_the_close() -> None:
    assert farewell(Codec.NATIVE, {"/conversations"}, "bye") == ['{"event":"disconnect","data":{"reason":"bye"}}']
    assert farewell(Codec.SOCKETIO, {"/notifications", "/", "/conversations"}, "bye") == [
        "41",
        "41/conversations,",
        "41/notifications,",
    ]
    assert farewell(Codec.SOCKETIO, set(), "bye") == []


# ---- Disconnect ----


def test_disconnect_ends_every_connection_of_the_user_and_no_one_elses(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana_native = Peer(gateway, "ana-1", "ana", "acme").connect()
    ana_sio = SocketIoPeer(gateway, "ana-2", "ana", "acme").connect()
    ana_sio.send("40/conversations,")
    ana_sio.send("40/notifications,")
    other_company = Peer(gateway, "ana-globex", "ana", "globex").connect()
    gateway.clear()

    assert publish("Disconnect", {"companyId": "acme", "userId": "ana", "reason": "account suspended"}) == {
        "status": "applied"
    }
    assert ana_native.received() == [{"event": "disconnect", "data": {"reason": "account suspended"}}]
    assert ana_sio.pushed() == ["41/conversations,", "41/notifications,"]
    assert sorted(gateway.closed) == ["ana-1", "ana-2"]
    assert graced.connections.get("ana-1") is None
    assert graced.connections.get("ana-2") is None
    # Announced at once, without the grace, and once.
    assert statuses(ben) == [("status:offline", "ana")]
    assert delayed.tasks == []
    # Nobody else: ben and ana's connection in another company are untouched.
    assert graced.connections.get("ben-1") is not None
    assert graced.connections.get("ana-globex") is not None
    assert other_company.received() == []
    assert ben.ok("ping")
    # API Gateway then runs each closed connection's $disconnect: nothing more is announced or delayed.
    ana_native.disconnect()
    ana_sio.disconnect()
    run_delayed()
    assert statuses(ben) == [("status:offline", "ana")]
    assert [user["userId"] for user in ben.ok("presence:list")["users"]] == ["ben"]


def test_disconnect_without_a_reason_says_kicked(graced: Services, gateway: RecordingGateway) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    publish("Disconnect", {"companyId": "acme", "userId": "ana"})
    assert ana.received("disconnect") == [{"event": "disconnect", "data": {"reason": "kicked"}}]


def test_a_kick_within_the_grace_announces_offline_at_once_and_the_grace_ends_silent(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect().disconnect()
    assert statuses(ben) == [("status:online", "ana")]
    publish("Disconnect", {"companyId": "acme", "userId": "ana"})
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_a_redelivered_kick_has_no_second_effect(graced: Services, gateway: RecordingGateway) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    publish("Disconnect", {"companyId": "acme", "userId": "ana"}, event_id="kick-1")
    reconnect(graced, "ana-2")  # a new handshake after the kick is let in
    publish("Disconnect", {"companyId": "acme", "userId": "ana"}, event_id="kick-1")
    assert graced.connections.get("ana-2") is not None
    assert len(ana.received("disconnect")) == 1
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana"), ("status:online", "ana")]


@pytest.mark.parametrize(
    "detail",
    [
        {"companyId": "acme"},
        {"companyId": "acme", "userId": "bad id"},
        {"companyId": "acme", "userId": "ana", "reason": ""},
        {"companyId": "acme", "userId": "ana", "surprise": 1},
        {"companyId": "acme", "userId": "ana", "reason": "x" * 257},
        {"companyId": "acme", "userId": "ana", "reason": "bell\x07"},
        {"companyId": "ac#me", "userId": "ana"},
        {"companyId": "acme", "userId": "an#a"},
        {"companyId": "acme", "userId": 7},
        {"userId": "ana"},
    ],
)
def test_a_malformed_disconnect_is_dropped(graced: Services, gateway: RecordingGateway, detail: dict[str, Any]) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    assert publish("Disconnect", detail) == {"status": "dropped"}
    assert ana.received("disconnect") == []
    assert graced.connections.get("ana-1") is not None


# ---- RevokeTokens ----


@pytest.mark.usefixtures("graced")
def test_revoke_refuses_older_tokens_at_the_handshake_and_keeps_fresh_and_other_ones(
    gateway: RecordingGateway,
) -> None:
    now = int(time.time())
    old = make_token({"userId": "ana", "companyId": "acme", "iat": now - 60})
    without_iat = make_token({"userId": "ana", "companyId": "acme"})
    fresh = make_token({"userId": "ana", "companyId": "acme", "iat": now})
    bens = make_token({"userId": "ben", "companyId": "acme", "iat": now - 60})
    globex = make_token({"userId": "ana", "companyId": "globex", "iat": now - 60})
    assert allowed(handshake(old))
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()

    issued_before = iso(datetime.fromtimestamp(now - 10, UTC))
    assert publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": issued_before}) == {
        "status": "applied"
    }
    assert ana.received("disconnect") == [{"event": "disconnect", "data": {"reason": "revoked"}}]
    assert gateway.closed == ["ana-1"]
    assert not allowed(handshake(old))
    assert not allowed(handshake(without_iat))
    accepted = handshake(fresh)
    assert allowed(accepted)
    # Every route of the new connection sees when its user's sessions were last ended.
    assert accepted["context"][SESSIONS_ENDED_AT].endswith("Z")
    assert allowed(handshake(bens))
    assert allowed(handshake(globex))


def test_the_handshake_makes_one_read(
    graced: Services, session: boto3.session.Session, calls: CallCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = AccessStore(Table(session.client("dynamodb"), settings().connections_table))
    monkeypatch.setattr("handlers.authorizer.access_store", lambda: counted)
    publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": iso(NOW - timedelta(hours=1))})
    calls.reset()
    assert allowed(handshake(make_token({"userId": "ana", "companyId": "acme", "iat": int(time.time())})))
    assert not allowed(handshake(make_token({"userId": "ana", "companyId": "acme"})))
    assert calls.calls == {"dynamodb.GetItem": 2}


def test_auth_refresh_refuses_a_revoked_token_and_accepts_a_fresh_one(
    graced: Services, gateway: RecordingGateway
) -> None:
    now = int(time.time())
    revoked = iso(datetime.fromtimestamp(now - 10, UTC))
    publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": revoked})
    reconnect(graced, "ana-2", exp=now + 60)  # with a fresh token, after the revocation
    ana = Peer(gateway, "ana-2", "ana", "acme", exp=now + 60)
    old = make_token({"userId": "ana", "companyId": "acme", "iat": now - 60, "exp": now + 3600})
    fresh = make_token({"userId": "ana", "companyId": "acme", "iat": now, "exp": now + 3600})
    assert ana.error("auth:refresh", {"token": old}) == "unauthorized"
    assert ana.ok("auth:refresh", {"token": fresh}) == {"exp": now + 3600}
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    bens_old = make_token({"userId": "ben", "companyId": "acme", "iat": now - 60, "exp": now + 3600})
    assert ben.ok("auth:refresh", {"token": bens_old}) == {"exp": now + 3600}


def test_an_older_revocation_applied_late_never_re_admits_tokens(graced: Services) -> None:
    now = int(time.time())
    newer, older = datetime.fromtimestamp(now - 10, UTC), datetime.fromtimestamp(now - 3600, UTC)
    publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": iso(newer)})
    publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": iso(older)})
    assert graced.access.read("acme", "ana").revoked_before == newer
    assert not allowed(handshake(make_token({"userId": "ana", "companyId": "acme", "iat": now - 60})))


@pytest.mark.parametrize("issued_before", ["yesterday", "2026-11-26T03:44:21", 1764128661])
def test_a_revocation_without_a_clear_instant_is_dropped(graced: Services, issued_before: Any) -> None:
    result = publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": issued_before})
    assert result == {"status": "dropped"}
    assert graced.access.read("acme", "ana") == Access()


# ---- a $connect running beside a kick ----


def test_a_connect_authorized_before_a_kick_and_recorded_after_its_listing_refuses_itself(
    graced: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()

    @interleaver.before("UpdateItem", "presence#acme", "ana-1")
    def the_kick_lists_before_ana_is_present() -> None:
        publish("Disconnect", {"companyId": "acme", "userId": "ana"})

    assert connect_with_context("ana-1", None) == 410
    assert interleaver.fired == ["UpdateItem"]
    assert gateway.closed == []  # the kick did not see it; it refused itself
    assert graced.connections.get("ana-1") is None
    assert [user["userId"] for user in ben.ok("presence:list")["users"]] == ["ben"]
    assert statuses(ben) == []


def test_a_connect_listed_by_the_kick_is_ended_by_it_and_announced_once(
    graced: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-0", "ana", "acme").connect()

    @interleaver.before("GetItem", "access#acme", "ana")
    def the_kick_lists_after_ana_is_present() -> None:
        publish("Disconnect", {"companyId": "acme", "userId": "ana"})

    assert connect_with_context("ana-1", None) == 410
    assert sorted(gateway.closed) == ["ana-0", "ana-1"]
    assert graced.connections.get("ana-1") is None
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_a_connect_whose_handshake_saw_the_kick_is_let_in(graced: Services, gateway: RecordingGateway) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    publish("Disconnect", {"companyId": "acme", "userId": "ana"})
    reconnect(graced, "ana-1")
    assert graced.connections.get("ana-1") is not None
    assert statuses(ben) == [("status:online", "ana")]


def test_a_kick_of_a_user_without_connections_only_ends_their_sessions(
    graced: Services, gateway: RecordingGateway
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    assert publish("Disconnect", {"companyId": "acme", "userId": "ana"}) == {"status": "applied"}
    assert gateway.closed == []
    assert statuses(ben) == []  # never online: nothing to announce
    assert graced.access.read("acme", "ana").sessions_ended_at is not None
    assert graced.access.read("acme", "ana").revoked_before is None


def test_a_socketio_connection_with_no_namespace_open_is_closed_without_a_packet(
    graced: Services, gateway: RecordingGateway
) -> None:
    ana = SocketIoPeer(gateway, "ana-1", "ana", "acme").connect()
    gateway.clear()
    publish("Disconnect", {"companyId": "acme", "userId": "ana"})
    assert ana.pushed() == []
    assert gateway.closed == ["ana-1"]


@pytest.mark.parametrize(
    "issued_before",
    [
        "0999-01-01T00:00:00Z",  # stored as "999-...": unreadable, and lexically after every later instant
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "9999-12-31T23:30:00-01:00",  # after year 9999 once in UTC
    ],
)
def test_a_revocation_outside_the_years_a_token_can_carry_is_dropped_and_leaves_the_user_usable(
    graced: Services, issued_before: str
) -> None:
    result = publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": issued_before})
    assert result == {"status": "dropped"}
    assert graced.access.read("acme", "ana") == Access()
    now = int(time.time())
    assert allowed(handshake(make_token({"userId": "ana", "companyId": "acme", "iat": now})))
    # A sound revocation after it still applies.
    later = iso(datetime.fromtimestamp(now - 10, UTC))
    publish("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": later})
    assert not allowed(handshake(make_token({"userId": "ana", "companyId": "acme", "iat": now - 60})))


def test_a_kick_meeting_a_disconnect_half_way_still_announces_offline_at_once(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    """ana's $disconnect has marked her connection closed but not yet left her presence when the kick lists
    her: the kick must still leave her absent and announced at once, not behind the grace that close begins."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect()

    @interleaver.before("UpdateItem", "presence#acme", "ana-1")
    def the_kick_comes() -> None:
        publish("Disconnect", {"companyId": "acme", "userId": "ana"})

    invoke("handlers.disconnect.handler", lifecycle_event("disconnect", "ana-1", "ana", "acme"))
    assert interleaver.fired == ["UpdateItem"]
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert [user["userId"] for user in ben.ok("presence:list")["users"]] == ["ben"]
    run_delayed()
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]


def test_a_kick_leaves_absent_a_user_whose_listed_connection_has_no_record_left(
    graced: Services, gateway: RecordingGateway
) -> None:
    """A connection whose $disconnect never came and whose record expired is still listed in its user's
    presence until the sweep: a kick must not leave that user present."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    Peer(gateway, "ana-1", "ana", "acme").connect()
    graced.connections._table.delete_item(Key={"pk": "conn#ana-1", "sk": "conn"})  # expired by TTL
    publish("Disconnect", {"companyId": "acme", "userId": "ana"})
    assert statuses(ben) == [("status:online", "ana"), ("status:offline", "ana")]
    assert [user["userId"] for user in ben.ok("presence:list")["users"]] == ["ben"]


@pytest.mark.usefixtures("graced")
def test_a_token_without_iat_is_refused_after_a_revocation_whatever_other_claims_it_has() -> None:
    """Only `iat` says when a token was issued: a claim named as the identity's field (`issued_at`) is not it."""
    now = int(time.time())
    publish(
        "RevokeTokens",
        {"companyId": "acme", "userId": "ana", "issuedBefore": iso(datetime.fromtimestamp(now - 10, UTC))},
    )
    assert not allowed(handshake(make_token({"userId": "ana", "companyId": "acme", "issued_at": now + 3600})))
    assert not allowed(
        handshake(make_token({"userId": "ana", "companyId": "acme", "iat": now - 60, "issued_at": now + 3600}))
    )


@pytest.mark.parametrize(
    "detail",
    [
        {"companyId": "acme", "userId": "ana"},
        {"userId": "ana", "issuedBefore": "2026-11-26T03:44:21Z"},
        {"companyId": "acme", "issuedBefore": "2026-11-26T03:44:21Z"},
        {"companyId": "acme", "userId": "an a", "issuedBefore": "2026-11-26T03:44:21Z"},
        {"companyId": "acme", "userId": "ana", "issuedBefore": None},
    ],
)
def test_a_malformed_revocation_is_dropped_and_ends_nothing(
    graced: Services, gateway: RecordingGateway, detail: dict[str, Any]
) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    assert publish("RevokeTokens", detail) == {"status": "dropped"}
    assert ana.received("disconnect") == []
    assert graced.connections.get("ana-1") is not None
    assert graced.access.read("acme", "ana") == Access()


def test_a_socketio_farewell_met_by_a_410_is_handed_off_once(
    graced: Services, gateway: RecordingGateway, deferred: QueuedDeferrer
) -> None:
    """A gone connection answers 410 to every packet: its other namespaces' packets are not posted, and it is
    handed off for clean-up once, not once a namespace."""
    ana = SocketIoPeer(gateway, "ana-2", "ana", "acme").connect()
    ana.send("40/conversations,")
    ana.send("40/notifications,")
    gateway.gone.add("ana-2")
    deferred.auto = False
    gateway.calls = 0
    publish("Disconnect", {"companyId": "acme", "userId": "ana"})
    gone = [task for task in deferred.take() if isinstance(task, ConnectionsGone)]
    assert [[recipient.connection_id for recipient in task.recipients] for task in gone] == [["ana-2"]]
    assert gateway.closed == ["ana-2"]
    assert graced.connections.get("ana-2") is None
