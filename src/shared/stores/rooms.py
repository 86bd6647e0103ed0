"""A room's recipients: the memberships under its key (`room#{companyId}#{room}` / `{connectionId}`, written by
`ConnectionStore.join` and a session's hand-over), read a Query page at a time, each with the codec it speaks
and, for a session, the journal position it hears the room from (decisions 0036, 0065)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from shared.protocol.codec import Codec
from shared.protocol.rooms import Room, RoomKind

if TYPE_CHECKING:
    from shared.stores.dynamo import Table


# Partitions of a company room's memberships (decision 0096): a broadcast to a company of 10,000 reads about 11
# read units from each, not about 160 from one. Fixed, not a setting: a close finds each membership's partition
# from its room key and connection id alone.
COMPANY_ROOM_SHARDS = 16
# Partitions read at once, through the store's one client (thread-safe; botocore keeps 10 connections a client).
_MEMBER_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="members")


def hour_index_shard(connection_id: str, shards: int) -> int:
    """The shard a connection is written to (of the hour indexes, of a company room's memberships): stable across
    processes and releases (a sha256, not Python's salted `hash`), so its close and the sweep find it where its
    $connect put it."""
    return int(hashlib.sha256(connection_id.encode("utf-8")).hexdigest()[:8], 16) % shards


def _sharded(room_key: str) -> bool:
    """Whether `room_key` (`room#{companyId}#{kind}:{id}`; ids hold no `#`) is a company room's."""
    return room_key.split("#", 2)[-1].startswith(f"{RoomKind.COMPANY}:")


def membership_pk(room_key: str, connection_id: str) -> str:
    """The partition a connection's membership of a room is in: a company room's shard for the connection,
    the room's own key for any other room."""
    if not _sharded(room_key):
        return room_key
    return f"{room_key}#{hour_index_shard(connection_id, COMPANY_ROOM_SHARDS)}"


def room_partitions(room_key: str) -> list[str]:
    """Every partition a room's memberships are in."""
    if not _sharded(room_key):
        return [room_key]
    return [f"{room_key}#{shard}" for shard in range(COMPANY_ROOM_SHARDS)]


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
        """The connections in a room and how each speaks, one DynamoDB page (of at most `page_size` over all
        of the room's partitions) at a time: a sharded room's partitions are read at once, a page of each."""
        partitions = room_partitions(room.key(company_id))
        limit = None if page_size is None else max(1, -(-page_size // len(partitions)))
        # The partitions still to read, each with where its next page starts.
        pending: dict[str, dict[str, Any] | None] = dict.fromkeys(partitions)
        while pending:
            if len(pending) == 1:
                ((pk, start),) = pending.items()
                pages = [(pk, self._member_page(pk, start, limit))]
            else:
                reads = {pk: _MEMBER_READS.submit(self._member_page, pk, start, limit) for pk, start in pending.items()}
                pages = [(pk, read.result()) for pk, read in reads.items()]
            pending = {pk: page["LastEvaluatedKey"] for pk, page in pages if "LastEvaluatedKey" in page}
            for _, page in pages:
                yield [
                    Member(str(item["sk"]), stored_codec(item), int(str(item["since"])) if "since" in item else None)
                    for item in page.get("Items", [])
                ]

    def _member_page(self, pk: str, start: dict[str, Any] | None, limit: int | None) -> dict[str, Any]:
        query: dict[str, Any] = {"Limit": limit} if limit is not None else {}
        if start is not None:
            query["ExclusiveStartKey"] = start
        return self._table.query(
            KeyConditionExpression=Key("pk").eq(pk),
            ProjectionExpression="sk, codec, since",
            ConsistentRead=True,
            **query,
        )

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
