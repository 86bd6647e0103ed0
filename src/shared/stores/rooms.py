"""A room's recipients: the memberships under its key (`room#{companyId}#{room}` / `{connectionId}`, written by
`ConnectionStore.join` and a session's hand-over), read a Query page at a time, each with the codec it speaks
and, for a session, the journal position it hears the room from (decisions 0036, 0065)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from shared.protocol.codec import Codec
from shared.protocol.rooms import Room
from shared.stores.dynamo import query_pages

if TYPE_CHECKING:
    from shared.stores.dynamo import Table


def stored_codec(item: dict[str, Any]) -> Codec:
    """The codec a record or membership names; absent: native."""
    return Codec(item["codec"]) if "codec" in item else Codec.NATIVE


@dataclass(frozen=True)
class Member:
    connection_id: str
    codec: Codec
    since: int | None = None
    """Set on a session's membership: the first journal position it hears live (decision 0065)."""


@dataclass(frozen=True)
class Recipients:
    """A room's members as one read found them, grouped by the codec each speaks."""

    company_id: str
    room: Room
    by_codec: dict[Codec, list[str]]
    exclude: str | None = None
    large: bool = False
    """Past the large-room threshold: `by_codec` holds the first page only, and the room is handed off whole."""
    sessions: tuple[Member, ...] = ()
    """Members that are sessions (decision 0065): each hears an event from its `since` position on, with its
    offset. Not in `by_codec`."""

    @staticmethod
    def of(company_id: str, room: Room, members: list[Member], exclude: str | None = None) -> Recipients:
        by_codec: dict[Codec, list[str]] = {}
        sessions: list[Member] = []
        for member in members:
            if member.since is None:
                by_codec.setdefault(member.codec, []).append(member.connection_id)
            else:
                sessions.append(member)
        return Recipients(company_id, room, by_codec, exclude, sessions=tuple(sessions))

    def plain(self) -> Recipients:
        """Only the members that are not sessions: those an event reaches without its journal position."""
        return Recipients(self.company_id, self.room, self.by_codec, self.exclude, self.large)

    def only_sessions(self) -> Recipients:
        return Recipients(self.company_id, self.room, {}, self.exclude, False, self.sessions)


class RoomReader:
    def __init__(self, table: Table, large_room_threshold: int | None = None) -> None:
        """Past `large_room_threshold` recipients a room is large (decision 0052); without one, none is."""
        self._table = table
        self._threshold = large_room_threshold

    def members(self, company_id: str, room: Room, page_size: int | None = None) -> Iterator[list[Member]]:
        """The connections in a room and how each speaks, one DynamoDB page (of at most `page_size`) at a time."""
        query: dict[str, Any] = {"Limit": page_size} if page_size is not None else {}
        for items in query_pages(
            self._table,
            KeyConditionExpression=Key("pk").eq(room.key(company_id)),
            ProjectionExpression="sk, codec, since",
            ConsistentRead=True,
            **query,
        ):
            yield [
                Member(str(item["sk"]), stored_codec(item), int(str(item["since"])) if "since" in item else None)
                for item in items
            ]

    def recipients(self, company_id: str, room: Room, exclude: str | None = None, whole: bool = False) -> Recipients:
        """Who is in the room now, but `exclude`: a caller may read this alongside its other reads, before its
        write. Past the large-room threshold, one page says so and the rest is left to the chunk workers,
        unless `whole` is asked."""
        threshold = None if whole else self._threshold
        # One page decides a large room: the excluded member and one past the threshold.
        page_size = None if threshold is None else threshold + 2
        found: list[Member] = []
        for page in self.members(company_id, room, page_size):
            found += [member for member in page if member.connection_id != exclude]
            if threshold is not None and len(found) > threshold:
                first = Recipients.of(company_id, room, found, exclude)
                return Recipients(company_id, room, first.by_codec, exclude, True, first.sessions)
        return Recipients.of(company_id, room, found, exclude)
