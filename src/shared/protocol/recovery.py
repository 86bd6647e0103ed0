"""Sessions that outlive connections (docs/protocol.md, "Sessions"; decision 0065): what is recoverable, the
opaque offset, and whether a reconnecting connection may take a session back. Plain data and functions.

An offset is a position in the company's journal (`shared.stores.journal`): one gap-free sequence of every
recoverable event sent to a room of that company, so one number orders everything a session can hear."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.protocol.codec import Codec
from shared.protocol.frames import Frame
from shared.protocol.identity import Identity
from shared.protocol.namespaces import NAMESPACE_OF_ROOM
from shared.protocol.rooms import parse_room

VOLATILE_EVENTS: Final = frozenset({"conversation:typing", "metrics:update"})
"""Events that are not worth replaying: stale the moment they are missed (docs/protocol.md: "volatile")."""

SESSION_EVENT: Final = "session"
PID_BYTES: Final = 16
"""128 bits of `secrets.token_urlsafe`: a session id is a bearer secret."""

_OFFSET: Final = re.compile(r"[0-9]{1,15}")
_PID: Final = re.compile(r"[A-Za-z0-9_-]{22}")

# API Gateway closes every connection after 2 hours: a session whose close was never reported is taken to
# have lost its connection by then.
MAX_CONNECTION_LIFE: Final = timedelta(hours=2, minutes=10)

NATIVE_SESSION: Final = "*"
"""The namespace field of a native session: one session per connection, every namespace."""


def recovery_asked(query: Mapping[str, str] | None) -> bool:
    """Sessions are opt-in by connection option: `recovery=1` in the handshake's query."""
    return query is not None and query.get("recovery") == "1"


NORMAL_CLOSURE: Final = 1000


def session_ended_by(codec: Codec, close_code: object) -> bool:
    """Whether a close ends the sessions of the connection. A native client ends its session by closing with
    1000 (API Gateway's `disconnectStatusCode`); a Socket.IO client ends one by `socket.disconnect()`, whose
    DISCONNECT packet came before (socket.io-client then closes with 1000 too, which means nothing more)."""
    return codec is Codec.NATIVE and close_code in (NORMAL_CLOSURE, str(NORMAL_CLOSURE))


def recoverable(frame: Frame) -> bool:
    """Every event sent to a room is recorded for replay, except the volatile ones."""
    return frame.get("event") not in VOLATILE_EVENTS


def offset_text(position: int) -> str:
    return str(position)


def parse_offset(text: object) -> int | None:
    """A client's offset back as a journal position, or None when it is not one we could have given."""
    if not isinstance(text, str) or _OFFSET.fullmatch(text) is None:
        return None
    return int(text)


def new_pid() -> str:
    return secrets.token_urlsafe(PID_BYTES)


def valid_pid(text: object) -> str | None:
    return text if isinstance(text, str) and _PID.fullmatch(text) is not None else None


def room_in_session(room_name: str, namespace: str) -> bool:
    """Whether a room's events belong to the session of `namespace` (a native session: every room)."""
    if namespace == NATIVE_SESSION:
        return True
    room = parse_room(room_name)
    return room is not None and NAMESPACE_OF_ROOM[room.kind] == namespace


class Unrecoverable(StrEnum):
    """Why a reconnection starts a new session instead (logged and counted; the client sees only false)."""

    UNKNOWN = "unknown_session"
    OTHER_IDENTITY = "other_identity"
    OTHER_NAMESPACE = "other_namespace"
    ENDED = "ended"
    ENDED_BY_KICK = "ended_by_kick"
    WINDOW_PASSED = "window_passed"
    BAD_OFFSET = "bad_offset"
    TOO_MANY_EVENTS = "too_many_events"
    INCOMPLETE = "incomplete"
    UNWRITTEN = "unwritten"
    """A journal position reserved before the recovery began stayed unwritten while it waited (decision 0108)."""
    TAKEN = "taken"


@dataclass(frozen=True)
class SessionState:
    """A session as stored: whose it is, where it is, and what is known of its last connection."""

    pid: str
    sid: str
    namespace: str
    user_id: str
    company_id: str
    created_at: datetime
    connection_id: str
    attached_at: datetime
    floor: int
    """The lowest offset its client can hold: the one it came back with, or its first `session` event's."""
    generation: int
    disconnected_at: datetime | None = None
    ended: bool = False


@dataclass(frozen=True)
class Claim:
    """What a reconnecting connection brings: who it is (verified), the namespace, the offset it last heard."""

    identity: Identity
    namespace: str
    offset: int | None
    sessions_ended_at: datetime | None = None
    """The authorizer's word that every session of this user started before it is over (a kick or a
    revocation); None when nothing was ended that way."""


def unrecoverable(
    session: SessionState | None, claim: Claim, *, head: int, now: datetime, window: timedelta
) -> Unrecoverable | None:
    """None when `session` may be taken back by `claim`, with the company journal at `head`; else why not."""
    if session is None:
        return Unrecoverable.UNKNOWN
    identity = claim.identity
    lost_at = session.disconnected_at or session.attached_at + MAX_CONNECTION_LIFE
    ended_at = claim.sessions_ended_at
    checks = (
        (
            session.user_id != identity.user_id or session.company_id != identity.company_id,
            Unrecoverable.OTHER_IDENTITY,
        ),
        (session.namespace != claim.namespace, Unrecoverable.OTHER_NAMESPACE),
        (session.ended, Unrecoverable.ENDED),
        (ended_at is not None and session.created_at <= ended_at, Unrecoverable.ENDED_BY_KICK),
        (now > lost_at + window, Unrecoverable.WINDOW_PASSED),
        (claim.offset is None or not session.floor <= claim.offset <= head, Unrecoverable.BAD_OFFSET),
    )
    return next((reason for failed, reason in checks if failed), None)


@dataclass(frozen=True)
class Entry:
    """One event in the company journal, at its position."""

    position: int
    room: str
    frame: Frame
    exclude: str | None = None


def missed(entries: Iterable[Entry], rooms: Mapping[str, int | None], namespace: str, holders: set[str]) -> list[Entry]:
    """What a session did not hear of `entries` (in journal order): the events of its namespace sent to its
    `rooms` (room name to the position it heard that room from; None: any), other than those sent to every
    member but one of its own connections (`holders`: `exclude`, as a user's own `status:online` is)."""
    return [
        entry
        for entry in entries
        if entry.room in rooms
        and ((since := rooms[entry.room]) is None or entry.position >= since)
        and (namespace == NATIVE_SESSION or (entry.frame.get("namespace") or "/") == namespace)
        and entry.exclude not in holders
    ]


def session_frame(namespace: str, pid: str, recovered: bool) -> Frame:
    """The `session` event that follows every (re)connection of a session; its offset says where it stands.
    A native session names its id (the client sends it back); a Socket.IO one has it in the CONNECT reply."""
    if namespace == NATIVE_SESSION:
        return {"event": SESSION_EVENT, "data": {"sessionId": pid, "recovered": recovered}}
    return {"event": SESSION_EVENT, "namespace": namespace, "data": {"recovered": recovered}}
