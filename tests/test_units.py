"""The pure decisions, on plain data, without moto: the rate schedule, admission, what a closed connection
leaves behind, what a $connect hands off, which rooms a backend event reaches, message composition, the
content rule, and running independent calls at once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.delivery.deferred import SessionOpened, UserOnline
from shared.domain.admission import refusal
from shared.domain.authorization import publishable_room
from shared.domain.messages import agent_draft, contact_draft, reply_seconds
from shared.domain.presence import connect_tasks
from shared.domain.together import together
from shared.protocol.actions import CONTENT_TOO_LARGE, SendMessage, validation_error
from shared.protocol.codec import Codec
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.identity import Identity
from shared.protocol.limits import limits
from shared.protocol.publishing import MessageReceived
from shared.protocol.records import SenderType
from shared.protocol.rooms import Room, RoomKind
from shared.stores.connections import leftovers
from shared.stores.ratelimit import Admission, Gcra

NOW = datetime(2026, 11, 26, 3, 44, 21, 123000, tzinfo=UTC)
TOO_LONG = "x" * (limits().max_content_bytes + 1)


def admitted_at_once(gcra: Gcra, now_ms: int) -> int:
    """How many actions an idle connection gets in at one instant: what the limiter's conditions allow."""
    tat = gcra.restarted(now_ms)
    admitted = 1
    while tat <= gcra.latest(now_ms):
        tat += int(gcra.interval_ms)
        admitted += 1
    return admitted


def test_the_schedule_admits_a_burst_at_once_then_one_action_per_interval() -> None:
    gcra = Gcra.of(per_second=20, burst=40)
    assert gcra.interval_ms == 50
    assert admitted_at_once(gcra, 1_000_000) == 40
    full = 1_000_000 + 40 * 50  # the arrival time after the burst
    assert full > gcra.latest(1_000_000)
    assert full <= gcra.latest(1_000_000 + 50)  # one interval later, one more fits
    assert full + 50 > gcra.latest(1_000_000 + 50)  # but not two


def test_the_burst_follows_the_configuration() -> None:
    assert admitted_at_once(Gcra.of(per_second=5, burst=3), 0) == 3


def test_an_admitted_frame_on_a_live_token_is_acted_on() -> None:
    assert refusal(Admission(True, 0, exp=int(NOW.timestamp()) + 60), NOW, 10, 20, 20) is None


def test_an_expired_token_closes_the_connection_even_within_the_rate() -> None:
    expired = Admission(True, 0, exp=int(NOW.timestamp()) - 11)
    refused = refusal(expired, NOW, 10, 20, 20)
    assert refused is not None
    assert (refused.error.code, refused.closes) == (ErrorCode.TOKEN_EXPIRED, True)


def test_the_leeway_keeps_a_just_expired_token_alive() -> None:
    assert refusal(Admission(True, 0, exp=int(NOW.timestamp()) - 9), NOW, 10, 20, 20) is None


def test_flooding_is_refused_and_closes_only_after_the_strikes() -> None:
    refused = refusal(Admission(False, 19, exp=None), NOW, 10, 20, 20)
    assert refused is not None
    assert (refused.error.code, refused.closes) == (ErrorCode.RATE_LIMITED, False)
    assert "20 actions per second" in refused.error.message
    closing = refusal(Admission(False, 20, exp=None), NOW, 10, 20, 20)
    assert closing is not None
    assert closing.closes


def test_a_closed_connection_leaves_its_rooms_the_room_it_was_found_in_and_its_index_entries() -> None:
    keys = leftovers("c1", {"acme#company", "acme#conv#1"}, "acme#conv#2", ("opened#2026112603", None, ""))
    assert keys == [
        {"pk": "acme#company", "sk": "c1"},
        {"pk": "acme#conv#1", "sk": "c1"},
        {"pk": "acme#conv#2", "sk": "c1"},
        {"pk": "opened#2026112603", "sk": "c1"},
    ]


def test_a_room_listed_and_found_in_is_removed_once() -> None:
    assert leftovers("c1", {"acme#conv#1"}, "acme#conv#1", ()) == [{"pk": "acme#conv#1", "sk": "c1"}]


def test_a_socketio_users_first_connection_hands_off_its_open_packet_and_its_announcement() -> None:
    identity = Identity(userId="ana", companyId="acme", codec=Codec.SOCKETIO)
    assert connect_tasks("c1", identity, first=True) == [
        SessionOpened(connectionId="c1"),
        UserOnline(companyId="acme", userId="ana", connectionId="c1"),
    ]


def test_a_native_users_further_connection_hands_off_nothing() -> None:
    assert connect_tasks("c2", Identity(userId="ana", companyId="acme"), first=False) == []


@pytest.mark.parametrize(
    ("name", "room"),
    [
        ("company:acme", Room(RoomKind.COMPANY, "acme")),
        ("analytics:acme", Room(RoomKind.ANALYTICS, "acme")),
        ("user:anyone", Room(RoomKind.USER, "anyone")),
        ("conversation:c-1", Room(RoomKind.CONVERSATION, "c-1")),
    ],
)
def test_a_backend_event_reaches_its_own_companys_rooms(name: str, room: Room) -> None:
    assert publishable_room("acme", name) == room


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("company:globex", ErrorCode.FORBIDDEN),
        ("analytics:globex", ErrorCode.FORBIDDEN),
        ("lobby:acme", ErrorCode.BAD_REQUEST),
        ("company:", ErrorCode.BAD_REQUEST),
    ],
)
def test_a_backend_event_cannot_reach_another_companys_rooms_or_unknown_ones(name: str, code: ErrorCode) -> None:
    with pytest.raises(RoomcastError) as raised:
        publishable_room("acme", name)
    assert raised.value.code is code


def test_an_agent_message_is_composed_with_its_author_and_client_id() -> None:
    draft = agent_draft("conv-1", "hello", "ana", "m-1", NOW)
    message = draft.at(7)
    assert message.public() == {
        "id": message.id,
        "conversationId": "conv-1",
        "seq": 7,
        "content": "hello",
        "senderType": "agent",
        "fromUserId": "ana",
        "timestamp": "2026-11-26T03:44:21.123Z",
        "clientMessageId": "m-1",
    }
    assert message.id.startswith("000000000007")
    assert draft.sender_key == "agent:ana#m-1"


def test_an_agent_message_without_a_client_id_is_stored_anew_on_each_attempt() -> None:
    assert agent_draft("conv-1", "hello", "ana", None, NOW).sender_key is None


def test_a_contact_message_is_keyed_by_its_external_id_or_else_its_event() -> None:
    external = contact_draft("conv-1", "hi", "k-1", "wa-9", event_id="ev-1", now=NOW)
    message = external.at(1)
    assert (message.sender_type, message.contact_id, message.from_user_id) == (SenderType.CONTACT, "k-1", None)
    assert message.external_id == "wa-9"
    assert external.sender_key == "contact:k-1#wa-9"
    assert contact_draft("conv-1", "hi", "k-1", None, event_id="ev-1", now=NOW).sender_key == "contact:k-1#event:ev-1"


def test_the_reply_time_counts_from_the_contact_message_and_is_never_negative() -> None:
    assert reply_seconds("2026-11-26T03:44:01.123Z", NOW) == 20.0
    assert reply_seconds((NOW + timedelta(seconds=1)).isoformat(), NOW) == 0.0


def test_content_over_the_limit_is_payload_too_large_for_a_client_whatever_else_is_wrong() -> None:
    with pytest.raises(ValidationError) as raised:
        SendMessage.model_validate({"conversationId": "not an id!", "content": TOO_LONG})
    error = validation_error(raised.value)
    assert error.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert error.message == f"data.content: content exceeds {limits().max_content_bytes} bytes"


def test_other_problems_are_bad_requests_located_in_the_frame() -> None:
    with pytest.raises(ValidationError) as raised:
        SendMessage.model_validate({"conversationId": "c", "content": ""})
    error = validation_error(raised.value)
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.message.startswith("data.content: ")


def test_a_publisher_gets_the_same_rule_as_a_validation_error_located_in_the_detail() -> None:
    with pytest.raises(ValidationError) as raised:
        MessageReceived(companyId="acme", conversationId="c", contactId="k", content=TOO_LONG)
    (problem,) = raised.value.errors()
    assert problem["type"] == CONTENT_TOO_LARGE
    assert validation_error(raised.value, "detail").message.startswith("detail.content: content exceeds")


def test_together_runs_its_calls_at_the_same_time() -> None:
    first_running, second_running = threading.Event(), threading.Event()

    def first() -> str:
        first_running.set()
        assert second_running.wait(5), "the second call did not run meanwhile"
        return "first"

    def second() -> str:
        second_running.set()
        assert first_running.wait(5), "the first call did not run meanwhile"
        return "second"

    assert together(first, second) == ("first", "second")


def test_together_waits_for_every_call_and_raises_the_first_calls_failure() -> None:
    finished: list[str] = []

    def fails_at_once() -> None:
        raise KeyError("first")

    def fails_later() -> None:
        time.sleep(0.05)
        finished.append("second")
        raise ValueError("second")

    with pytest.raises(KeyError):
        together(fails_at_once, fails_later)
    assert finished == ["second"]
