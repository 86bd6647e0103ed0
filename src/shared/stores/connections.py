"""Connections, room memberships and presence in DynamoDB.

One table, four item types (see docs/data-model.md):
  conn#{connectionId} / conn          the connection, with the set of room keys it is in; once closed, a
                                      tombstone (`closedAt`) until its TTL, so a late $connect is refused
  room#{companyId}#{room} / {connId}  a membership, queried for fan-out; a company room's are spread over
                                      room#{companyId}#company:{id}#{shard} / {connId} (`membership_pk`)
  presence#{companyId}[#{shard}] / {userId}   the set of a user's open connections, and `offlinePending` while
                                      the user has none but is within the presence grace; in the user's shard of
                                      the company (`presence_pk`), shard 0 the unsharded key (decision 0107)
  opened#{YYYY-MM-DDTHH}#{shard} / {connId}    connections by the hour they opened, for the sweep of stale ones
  heartbeat#{YYYY-MM-DDTHH}#{shard} / {connId} Socket.IO connections by the hour they opened, for the heartbeat
The hour indexes are sharded (`hour_index_shard`, decision 0093): every connect and close of the platform
would otherwise write one partition, and one heartbeat invocation pings one shard. A company room's memberships
are sharded the same way (decision 0096): every large broadcast of the company reads them all, its shards at once.
A company's presence items are sharded by user (decision 0107): a reconnect storm's closes, and its graces' ends,
would otherwise write one partition; the presence list merges the shards in user id order.

A Socket.IO connection's record and memberships carry `codec` (absent: native), so fan-out learns each
member's encoding from the membership query itself (decision 0036).

Lambda runs $connect, $disconnect and every route concurrently (decision 0012): the tombstone and the
re-check at the end of `open` make a connection either fully recorded or not recorded at all.
"""

from __future__ import annotations

import heapq
import itertools
import math
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from shared.protocol.clock import iso
from shared.protocol.codec import Codec
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import ListRoom
from shared.protocol.identity import Identity
from shared.protocol.rooms import Room, home_rooms
from shared.stores.dynamo import (
    CONDITION_FAILED,
    TransactionCancelled,
    conditional_check_failed,
    query_pages,
    transact,
    update_if,
)
from shared.stores.journal import Journal
from shared.stores.rooms import hour_index_shard, membership_pk, stored_codec

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

CONNECTION_SK = "conn"
# API Gateway closes every connection after 2 hours; one still recorded well after that missed its $disconnect.
MAX_CONNECTION_LIFE = timedelta(hours=2, minutes=10)
SWEEP_LOOKBACK_HOURS = 24
# API Gateway answers 410 for a connection until its $connect returns, which takes at most the
# integration's 29 s: a 410 for a younger connection is no proof that it is gone.
CONNECT_GRACE = timedelta(seconds=30)
# A tombstone only has to outlive a $connect still in flight.
TOMBSTONE_LIFE = timedelta(hours=1)
OPEN = "attribute_exists(pk) AND attribute_not_exists(closedAt)"
# DynamoDB's 100 items a transaction, less the record's update and the journal's condition check.
TRANSACTION_ROOMS = 98
# Partitions per hour of the opened and heartbeat indexes (the template's HourIndexShards).
HOUR_INDEX_SHARDS = 16
# Partitions of a company's presence items, by user (decision 0107): a storm of 10,000 agents writes about 15,000
# presence units in its graces' end second, its busiest of 32 shards about 550 (of 16, about 1,050: over
# DynamoDB's 1,000 a partition). Fixed, not a setting: a user's item is found from the company and user ids alone.
PRESENCE_SHARDS = 32
# The end of a grace token begun in a user's shard other than 0 (decision 0107).
GRACE_IN_SHARD = ".s"
# On a user's item in their shard: a connection from before decision 0107's deploy was open in the unsharded key
# when they first connected after it.
UNSHARDED_OPEN = "unshardedOpen"
# Partitions of the presence list read at once (botocore keeps 10 connections a client).
_PRESENCE_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="presence")


class Departure(Enum):
    """What a close means for the user's presence when it removes their last connection."""

    GRACE = "grace"
    """The user stays present, `offlinePending` names the grace begun; the caller schedules its end."""
    NOW = "now"
    """The user is absent at once (a kick, a revocation, or a grace of 0 seconds): the caller announces it."""
    UNDO = "undo"
    """Undoes a first connection refused at $connect: its user was never announced, so nothing is."""


class ConnectionFailed(Exception):
    """Recording the connection failed (raised from the failure, named in the message): nothing of it is left
    recorded. `closed`: what undoing it did to its user's presence, for the caller to settle."""

    def __init__(self, connection_id: str, failure: Exception, closed: Closed | None = None) -> None:
        super().__init__(f"recording {connection_id} failed: {failure}")
        self.closed = closed


class ConnectionRefused(Exception):
    """The connection closed while $connect was recording it: nothing of it is left recorded. `closed`: what
    undoing it did to its user's presence, for the caller to settle."""

    def __init__(self, connection_id: str, closed: Closed | None = None) -> None:
        super().__init__(connection_id)
        self.closed = closed


@dataclass(frozen=True)
class Connection:
    connection_id: str
    identity: Identity
    room_keys: frozenset[str]
    namespaces: frozenset[str] = frozenset()
    """The Socket.IO namespaces it has opened."""
    sessions: tuple[tuple[str, str], ...] = ()
    """The sessions it held: (namespace, pid) pairs (decision 0065)."""


@dataclass(frozen=True)
class Closed:
    connection: Connection
    went_offline: bool
    """The user has no open connection left: announce it now, or, with `offline_pending`, after the grace."""
    offline_pending: str | None = None
    """The grace the user is in, whose end (`end_grace`) is the caller's to schedule."""


@dataclass(frozen=True)
class OnlinePage:
    users: list[dict[str, Any]]
    next_cursor: str | None


def connection_key(connection_id: str) -> dict[str, str]:
    """The key of a connection's own item; the rate limiter keeps its state there too."""
    return {"pk": f"conn#{connection_id}", "sk": CONNECTION_SK}


def _legacy_presence_pk(company_id: str) -> str:
    """The company's presence partition before decision 0107: shard 0 now, and where items written before the
    deploy stay until they expire."""
    return f"presence#{company_id}"


def presence_shard(user_id: str) -> int:
    """The shard of a company's presence a user's item is in: stable across processes and releases."""
    return hour_index_shard(user_id, PRESENCE_SHARDS)


def presence_pk(company_id: str, user_id: str) -> str:
    """The partition of the user's presence item: `presence#{companyId}` for shard 0, else with `#{shard}`."""
    return _presence_partition(company_id, presence_shard(user_id))


def _presence_partition(company_id: str, shard: int) -> str:
    return _legacy_presence_pk(company_id) if shard == 0 else f"{_legacy_presence_pk(company_id)}#{shard}"


def _user_partitions(company_id: str, user_id: str) -> list[str]:
    """Where a user's presence item may be: their shard, and the unsharded key for an item from before decision
    0107 (one partition for a user of shard 0)."""
    return list(dict.fromkeys((presence_pk(company_id, user_id), _legacy_presence_pk(company_id))))


def _grace_partition(company_id: str, user_id: str, grace: str) -> str:
    """The partition a grace runs in, as its token says: a grace begun in the user's shard ends with
    GRACE_IN_SHARD; one in the unsharded key (shard 0, or from before decision 0107) does not."""
    return presence_pk(company_id, user_id) if grace.endswith(GRACE_IN_SHARD) else _legacy_presence_pk(company_id)


def presence_partitions(company_id: str) -> list[str]:
    """Every partition a company's presence items are in."""
    return [_presence_partition(company_id, shard) for shard in range(PRESENCE_SHARDS)]


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def _opened_pk(moment: datetime, shard: int) -> str:
    return f"opened#{_hour(moment)}#{shard}"


def _heartbeat_pk(moment: datetime, shard: int) -> str:
    return f"heartbeat#{_hour(moment)}#{shard}"


def leftovers(
    connection_id: str, room_keys: Iterable[str], found_in: str | None, buckets: Iterable[object]
) -> list[dict[str, str]]:
    """The items a closed connection leaves behind, each once: its memberships (with the one a 410 was found
    through, which its record may no longer list), each in its room's partition for the connection, and its
    entries in the opened and heartbeat indexes."""
    rooms = set(room_keys) | ({found_in} if found_in is not None else set())
    keys = {membership_pk(key, connection_id) for key in rooms}
    keys |= {str(bucket) for bucket in buckets if bucket}
    return [{"pk": key, "sk": connection_id} for key in sorted(keys)]


def is_open(item: dict[str, Any] | None) -> bool:
    return item is not None and "closedAt" not in item


def is_present(presence: dict[str, Any] | None) -> bool:
    """A user's presence item says they are present: an open connection, or a grace running."""
    return bool((presence or {}).get("connections")) or "offlinePending" in (presence or {})


def makes_present(before: dict[str, Any] | None) -> bool:
    """Whether adding a connection to the presence item `before` makes its user present (to be announced)."""
    return not is_present(before)


def _plain(value: Any) -> str | None:
    """A string attribute as a condition failure returns it (DynamoDB's `{"S": ...}` form), or as it is."""
    if isinstance(value, dict):
        found = value.get("S")
        return None if found is None else str(found)
    return None if value is None else str(value)


def _ended(grace: str, delivery: str) -> str:
    """What `offlineEnded` holds: the grace, and the message that ended it (another copy is not a redelivery)."""
    return f"{grace}/{delivery}"


@dataclass(frozen=True)
class Opened:
    """A connection as the hourly index remembers it, even after its own record expired."""

    connection_id: str
    identity: Identity
    bucket: str


class ConnectionGone(Exception):
    """The connection closed before a session's rooms were written on it."""


class JournalMoved(Exception):
    """An event's position past the cut a session's rooms were being written at is reserved: read on from there."""


class ConnectionStore:
    def __init__(
        self,
        table: Table,
        ttl_seconds: int,
        max_rooms: int,
        journal: Journal | None = None,
        tombstone_life: timedelta = TOMBSTONE_LIFE,
        *,
        hour_index_shards: int = HOUR_INDEX_SHARDS,
    ) -> None:
        """`journal`: where sessions' joins take their cut (decision 0065). `tombstone_life`: a session's
        rooms are read from its last connection's tombstone, so it lives as long as the recovery window.
        `hour_index_shards`: partitions per hour of the opened and heartbeat indexes (decision 0093)."""
        if hour_index_shards < 1:
            raise ValueError("the hour indexes need at least one shard")
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._max_rooms = max_rooms
        self._journal = journal
        self._tombstone_life = max(tombstone_life, TOMBSTONE_LIFE)
        self.hour_index_shards = hour_index_shards

    def _shard(self, connection_id: str) -> int:
        return hour_index_shard(connection_id, self.hour_index_shards)

    def _expiry(self, now: datetime) -> int:
        return int(now.timestamp()) + self._ttl_seconds

    def open(
        self, connection_id: str, identity: Identity, now: datetime, departure: Departure = Departure.GRACE
    ) -> bool:
        """Record a connection in its home rooms. Returns True when it makes its user present: no other
        connection, no grace running (a reconnect within the grace is not a first connection). Raises
        ConnectionRefused when the connection closed meanwhile, ConnectionFailed when a write failed; then
        nothing of it stays recorded, and its undoing leaves the user as a close by `departure` would (a first
        connection's, as if never made)."""
        expires = self._expiry(now)
        opened = _opened_pk(now, self._shard(connection_id))
        first: bool | None = None
        keys = {room.key(identity.company_id) for room in home_rooms(identity.company_id, identity.user_id)}
        record: dict[str, Any] = {
            **connection_key(connection_id),
            "connectionId": connection_id,
            "userId": identity.user_id,
            "companyId": identity.company_id,
            "email": identity.email,
            "exp": identity.exp,
            "connectedAt": iso(now),
            "rooms": keys,
            # A session's rooms and the journal position each was joined at (decision 0065); leave removes one.
            "joined": {},
            "opened": opened,
            # Where its user's presence item is (decision 0107): its close finds it there. A record without it is
            # from before that decision, its connection in the unsharded key.
            "presence": presence_pk(identity.company_id, identity.user_id),
            "ttl": expires,
        }
        if identity.codec is not Codec.NATIVE:
            record["codec"] = str(identity.codec)
        if identity.recovery:
            # Its sessions, by namespace; their rooms are joined at a cut of the journal (`attach`).
            record.update(recovery=True, sessions={})
        try:
            self._table.put_item(
                Item=record,
                # A tombstone here means its $disconnect (or a clean-up) came first.
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            # An open record can only be this very write, resent by botocore after its answer was lost.
            found: dict[str, Any] = error.response.get("Item", {"closedAt": None})  # type: ignore[assignment]
            if "closedAt" in found:
                raise ConnectionRefused(connection_id) from error
        try:
            with self._table.batch_writer() as batch:
                # A Socket.IO client must hear its open packet first: it joins its rooms once that is sent. A
                # native session joins them at a cut of the journal, after $connect returns (`attach`).
                for key in keys if identity.codec is Codec.NATIVE and not identity.recovery else ():
                    batch.put_item(Item=self._membership(key, connection_id, identity, expires))
                batch.put_item(
                    Item={
                        "pk": opened,
                        "sk": connection_id,
                        "userId": identity.user_id,
                        "companyId": identity.company_id,
                        "ttl": int((now + timedelta(hours=SWEEP_LOOKBACK_HOURS + 2)).timestamp()),
                    }
                )
            # A grace running (`offlinePending`) is left for its end to find this connection: should this one
            # be refused, the grace still ends in the one announcement it owes.
            previous = self._table.update_item(
                Key={"pk": record["presence"], "sk": identity.user_id},
                UpdateExpression="ADD connections :c SET #ttl = :ttl REMOVE offlineEnded",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":c": {connection_id}, ":ttl": expires},
                ReturnValues="ALL_OLD",
            )
            before: dict[str, Any] | None = previous.get("Attributes")
            first = makes_present(before)
            # No item in her shard yet, or one whose graces look in the unsharded key (a connection from before
            # the deploy was open there): she may be present there.
            unsharded = before is None or bool(before.get(UNSHARDED_OPEN))
            if first and unsharded and record["presence"] != _legacy_presence_pk(identity.company_id):
                first = self._first_since_the_deploy(identity)
            # A close that ran while we wrote may have missed what we wrote after it: look once more.
            still_open = is_open(self._record(connection_id))
        except Exception as error:
            closed = self.close(connection_id, now, departure=Departure.UNDO if first else departure)
            raise ConnectionFailed(connection_id, error, closed) from error
        if not still_open:
            closed = self.close(connection_id, now, departure=Departure.UNDO if first else departure)
            raise ConnectionRefused(connection_id, closed)
        return first

    def _first_since_the_deploy(self, identity: Identity) -> bool:
        """A user with no item in their shard yet may be present in the unsharded key, from before decision 0107's
        deploy: then this connection does not make them present. With a connection still open there, their shard's
        item says so (`unshardedOpen`), for a grace begun in their shard to look there before it ends."""
        before = self._table.get_item(
            Key={"pk": _legacy_presence_pk(identity.company_id), "sk": identity.user_id},
            ConsistentRead=True,
            ProjectionExpression="connections, offlinePending",
        ).get("Item")
        if before is not None and before.get("connections"):
            self._table.update_item(
                Key={"pk": presence_pk(identity.company_id, identity.user_id), "sk": identity.user_id},
                UpdateExpression=f"SET {UNSHARDED_OPEN} = :yes",
                ExpressionAttributeValues={":yes": True},
            )
        return not is_present(before)

    def _present_elsewhere(self, company_id: str, user_id: str, pk: str, seen: dict[str, Any]) -> bool:
        """Whether a grace that ended in `pk` (the item `seen` before) leaves its user present through their other
        item (decision 0107's deploy): a grace in the unsharded key of a user of another shard, from before it,
        looks in their shard; one in their shard looks in the unsharded key while `unshardedOpen` says a
        connection from before it was open there, and forgets that once none is. Present there: a connection open,
        or a grace of its own running (which then announces)."""
        shard, legacy = presence_pk(company_id, user_id), _legacy_presence_pk(company_id)
        if pk == shard and (shard == legacy or not seen.get(UNSHARDED_OPEN)):
            return False
        other = legacy if pk == shard else shard
        item = self._table.get_item(
            Key={"pk": other, "sk": user_id}, ConsistentRead=True, ProjectionExpression="connections, offlinePending"
        ).get("Item")
        # A grace running there too (both her connections closed within it) is left to announce: each grace's end
        # removes its own mark before it reads the other's, so at least one of the two sees the other over.
        if is_present(item):
            return True
        if pk == shard:
            self._table.update_item(Key={"pk": shard, "sk": user_id}, UpdateExpression=f"REMOVE {UNSHARDED_OPEN}")
        return False

    def _record(self, connection_id: str) -> dict[str, Any] | None:
        return self._table.get_item(Key=connection_key(connection_id), ConsistentRead=True).get("Item")

    def get(self, connection_id: str) -> Connection | None:
        item = self._record(connection_id)
        return _connection(item) if item is not None and is_open(item) else None

    def close(
        self,
        connection_id: str,
        now: datetime,
        remembered: Opened | None = None,
        found_in: str | None = None,
        settled_before: datetime | None = None,
        *,
        departure: Departure = Departure.GRACE,
    ) -> Closed | None:
        """Mark a connection closed and remove its presence and memberships. Idempotent; safe beside a
        $connect still running (which then refuses the connection). `found_in`: a membership to remove
        even when no record lists it. `settled_before`: when a 410 came; a connection that was younger
        than CONNECT_GRACE then is left alone (the 410 is no proof it is gone). `departure`: what removing
        the user's last connection means (Departure). Returns None when there was nothing to close."""
        update: dict[str, Any] = {
            "Key": connection_key(connection_id),
            "UpdateExpression": "SET closedAt = if_not_exists(closedAt, :closed), #ttl = :ttl",
            "ExpressionAttributeNames": {"#ttl": "ttl"},
            "ExpressionAttributeValues": {":closed": iso(now), ":ttl": int((now + self._tombstone_life).timestamp())},
            "ReturnValues": "ALL_OLD",
        }
        if settled_before is not None:
            update["ConditionExpression"] = "attribute_not_exists(connectedAt) OR connectedAt < :settled"
            update["ExpressionAttributeValues"][":settled"] = iso(settled_before - CONNECT_GRACE)
        try:
            previous = self._table.update_item(**update).get("Attributes")
        except ClientError as error:
            if conditional_check_failed(error):
                return None
            raise
        heartbeat = None
        partitions: list[str] = []
        if previous is not None and "userId" in previous:
            connection = _connection(previous)
            opened = previous.get("opened")
            heartbeat = previous.get("heartbeat")
            partitions = [str(previous.get("presence", _legacy_presence_pk(connection.identity.company_id)))]
        elif remembered is not None:
            connection = Connection(connection_id, remembered.identity, frozenset())
            opened = remembered.bucket
            # Its record expired: its user's shard, or the unsharded key for a connection from before decision 0107.
            partitions = _user_partitions(connection.identity.company_id, connection.identity.user_id)
        else:
            connection, opened = None, None
        closed = None
        if connection is not None:
            # Presence first: should what follows fail, the hourly index still leads the sweep back here.
            closed = self._leave_presence(connection, departure, now, partitions)
        rooms = connection.room_keys if connection is not None else frozenset()
        with self._table.batch_writer() as batch:
            for key in leftovers(connection_id, rooms, found_in, (opened, heartbeat)):
                batch.delete_item(Key=key)
        return closed

    def _leave_presence(
        self, connection: Connection, departure: Departure, now: datetime, partitions: list[str]
    ) -> Closed:
        """Remove the connection from its user's presence (in the first of `partitions` that has an item for the
        user), in one conditional write, so that of two closes, a kick and a grace's end, exactly one sees the
        user's last connection go."""
        identity = connection.identity
        legacy = _legacy_presence_pk(identity.company_id)
        tried: list[str] = []

        def update(pk: str) -> dict[str, Any]:
            tried.append(pk)
            values: dict[str, Any] = {":c": {connection.connection_id}, ":id": connection.connection_id}
            if departure is Departure.GRACE:
                # Every grace has a token of its own: the end of an older one, cut short by a reconnect, finds a
                # newer one and announces nothing. The token says which partition the grace is in.
                token = secrets.token_hex(8) + ("" if pk == legacy else GRACE_IN_SHARD)
                values |= {":grace": token, ":ttl": self._expiry(now)}
                expression = "DELETE connections :c SET offlinePending = :grace, #ttl = :ttl"
            else:
                expression = "DELETE connections :c REMOVE offlinePending"
            built: dict[str, Any] = {
                "UpdateExpression": expression,
                "ConditionExpression": "contains(connections, :id)",
                "ExpressionAttributeValues": values,
                "ReturnValues": "ALL_NEW",
            }
            if departure is Departure.GRACE:
                built["ExpressionAttributeNames"] = {"#ttl": "ttl"}
            return built

        try:
            after: dict[str, Any] = self._update_presence(identity.user_id, partitions, update).get("Attributes", {})
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            # Closed before (a retried clean-up, a $disconnect after a kick): a grace it may have begun is
            # scheduled again, since the first schedule may be what failed; its end is announced once anyway.
            seen: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            pending = _plain(seen.get("offlinePending"))
            resume = departure is Departure.GRACE and pending is not None and not seen.get("connections")
            return Closed(connection, went_offline=resume, offline_pending=pending if resume else None)
        if after.get("connections") or departure is Departure.UNDO:
            return Closed(connection, went_offline=False)
        if departure is not Departure.GRACE and self._present_elsewhere(
            identity.company_id, identity.user_id, tried[-1], after
        ):
            # No grace to look later (PRESENCE_GRACE_SECONDS=0, a kick): her other item, across decision 0107's
            # deploy, is looked in now.
            return Closed(connection, went_offline=False)
        return Closed(connection, went_offline=True, offline_pending=after.get("offlinePending"))

    def end_grace(self, company_id: str, user_id: str, grace: str, delivery: str = "") -> bool:
        """The end of the grace `grace`, carried by the message `delivery`: True when the user is still without a
        connection, then absent, to be announced; False when they reconnected, or another grace or a kick took
        over, or another message ended this grace. True again for a redelivery of the message that ended it,
        while its announcement is not made (`grace_announced`)."""
        pk = _grace_partition(company_id, user_id, grace)
        try:
            before = self._update_presence(
                user_id,
                [pk],
                lambda _pk: {
                    # `offlineEnded` remembers which grace ended here until its announcement is made (or a
                    # reconnect): should the announcement fail, the message's redelivery still owes it.
                    "UpdateExpression": "REMOVE offlinePending SET offlineEnded = :ended",
                    "ConditionExpression": "offlinePending = :grace",
                    "ExpressionAttributeValues": {":grace": grace, ":ended": _ended(grace, delivery)},
                    "ReturnValues": "ALL_OLD",
                },
            )
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            seen: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            # This very message ended the grace before, its announcement not made, no connection or grace since.
            again = (
                _plain(seen.get("offlineEnded")) == _ended(grace, delivery)
                and not seen.get("connections")
                and "offlinePending" not in seen
            )
            return again and not self._present_elsewhere(company_id, user_id, pk, seen)
        ended: dict[str, Any] = before.get("Attributes", {})
        return not ended.get("connections") and not self._present_elsewhere(company_id, user_id, pk, ended)

    def grace_announced(self, company_id: str, user_id: str, grace: str, delivery: str = "") -> None:
        """The end of the grace `grace` was announced: a redelivery of its message announces nothing more."""
        try:
            self._update_presence(
                user_id,
                [_grace_partition(company_id, user_id, grace)],
                lambda _pk: {
                    "UpdateExpression": "REMOVE offlineEnded",
                    "ConditionExpression": "offlineEnded = :ended",
                    "ExpressionAttributeValues": {":ended": _ended(grace, delivery)},
                },
            )
        except ClientError as error:
            if not conditional_check_failed(error):
                raise

    def cut_grace(self, company_id: str, user_id: str) -> bool:
        """End a grace now, whichever it is (a kick), in the user's shard and in the unsharded key, where a grace
        from before decision 0107 may run: True when the user was within one, now absent."""
        cut = False
        for pk in _user_partitions(company_id, user_id):
            cut |= update_if(
                self._table,
                Key={"pk": pk, "sk": user_id},
                UpdateExpression="REMOVE offlinePending",
                ConditionExpression="attribute_exists(offlinePending) AND attribute_not_exists(connections)",
            )
        return cut

    def _update_presence(
        self, user_id: str, partitions: list[str], update: Callable[[str], dict[str, Any]]
    ) -> dict[str, Any]:
        """An UpdateItem (`update(pk)`) of the user's presence item in the first of `partitions`, and in the next
        when its condition failed there (the connection is not in that item, or there is none). A failed condition
        raises as DynamoDB answered in a partition that holds the user's item (one with a grace running first), with
        the item it saw (`ReturnValuesOnConditionCheckFailure`), or as it answered the first when none does."""
        failed: list[ClientError] = []
        for pk in partitions:
            try:
                return self._table.update_item(
                    Key={"pk": pk, "sk": user_id}, ReturnValuesOnConditionCheckFailure="ALL_OLD", **update(pk)
                )
            except ClientError as error:
                if not conditional_check_failed(error):
                    raise
                failed.append(error)
        if not failed:
            raise ValueError("no partition to update")
        # The answer of a partition holding her item, one with a grace running first: it says what the item was.
        held = [error for error in failed if error.response.get("Item")]
        graced = [error for error in held if "offlinePending" in _failed_item(error)]
        raise (graced or held or failed)[0]

    def _presence_items(self, company_id: str, user_id: str, projection: str, *, both: bool) -> list[dict[str, Any]]:
        """The user's presence items, read consistently: the one in their shard and, for a user whose shard is not
        0, the one the unsharded key may still hold from before decision 0107's deploy: read when their shard has
        none, or always (`both`)."""
        pk, legacy = presence_pk(company_id, user_id), _legacy_presence_pk(company_id)
        found: list[dict[str, Any]] = []
        for key in (pk, legacy) if pk != legacy else (pk,):
            if found and not both:
                break
            item = self._table.get_item(
                Key={"pk": key, "sk": user_id}, ConsistentRead=True, ProjectionExpression=projection
            ).get("Item")
            if item is not None:
                found.append(item)
        return found

    def of_user(self, company_id: str, user_id: str) -> tuple[list[Connection], list[str]]:
        """The user's open connections in the company, read consistently: their presence item (with one the
        unsharded key may hold from before decision 0107), then one GetItem per connection; and the ids their
        presence lists without an open record (a close half-way, a record expired)."""
        listed: set[str] = set()
        for item in self._presence_items(company_id, user_id, "connections", both=True):
            listed |= item.get("connections", set())
        found = {str(connection_id): self.get(str(connection_id)) for connection_id in sorted(listed)}
        return (
            [connection for connection in found.values() if connection is not None],
            [connection_id for connection_id, connection in found.items() if connection is None],
        )

    def is_online(self, company_id: str, user_id: str) -> bool:
        """Whether the user is present: an open connection, or within the grace after their last one."""
        pk, legacy = presence_pk(company_id, user_id), _legacy_presence_pk(company_id)
        # Her shard first; the unsharded key, where a connection from before decision 0107 may be open, only when
        # her shard does not say she is present (no item, or one left without connections by a grace's end).
        for key in (pk, legacy) if pk != legacy else (pk,):
            item = self._table.get_item(
                Key={"pk": key, "sk": user_id}, ConsistentRead=True, ProjectionExpression="connections, offlinePending"
            ).get("Item")
            if is_present(item):
                return True
        return False

    def stale(self, now: datetime) -> list[Opened]:
        """Connections opened in hours that ended longer than API Gateway's 2-hour limit ago, still recorded."""
        newest = now - MAX_CONNECTION_LIFE - timedelta(hours=1)
        found: list[Opened] = []
        buckets = (
            _opened_pk(newest - timedelta(hours=hours_back), shard)
            for hours_back in range(SWEEP_LOOKBACK_HOURS)
            for shard in range(self.hour_index_shards)
        )
        for bucket in buckets:
            for items in query_pages(self._table, KeyConditionExpression=Key("pk").eq(bucket)):
                found.extend(
                    Opened(
                        connection_id=str(item["sk"]),
                        identity=Identity(userId=item["userId"], companyId=item["companyId"]),
                        bucket=bucket,
                    )
                    for item in items
                )
        return found

    def extend(self, connection_id: str, exp: int | None) -> None:
        """Let the connection live until `exp` (None: no expiry), after auth:refresh."""
        try:
            self._table.update_item(
                Key=connection_key(connection_id),
                UpdateExpression="SET #exp = :exp",
                ConditionExpression=OPEN,
                ExpressionAttributeNames={"#exp": "exp"},
                ExpressionAttributeValues={":exp": exp},
            )
        except ClientError as error:
            if conditional_check_failed(error):
                raise _closed() from error
            raise

    def join(self, connection_id: str, identity: Identity, room: Room, now: datetime) -> None:
        """Add a membership, both on the connection's record and as the item fan-out queries, atomically.
        Refused (`conflict`) when the connection is closed or already in `max_rooms` rooms. A session's
        membership is written at a cut of the journal (decision 0065): it hears the room's events from there."""
        key = room.key(identity.company_id)
        while True:
            try:
                self._join(connection_id, identity, key, now)
                return
            except JournalMoved:
                continue  # an event's position was reserved meanwhile: take the cut after it

    def _join(self, connection_id: str, identity: Identity, key: str, now: datetime) -> None:
        update: dict[str, Any] = {
            "TableName": self._table.name,
            "Key": connection_key(connection_id),
            "UpdateExpression": "ADD rooms :r",
            "ConditionExpression": f"{OPEN} AND size(rooms) < :max",
            "ExpressionAttributeValues": {":r": {key}, ":max": self._max_rooms},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        items: list[Any] = [{"Update": update}]
        since = None
        if identity.recovery and self._journal is not None:
            cut = self._journal.head(identity.company_id)
            since = cut + 1
            update["UpdateExpression"] += " SET joined.#room = :since"
            update["ExpressionAttributeNames"] = {"#room": key}
            update["ExpressionAttributeValues"][":since"] = since
            items.append({"ConditionCheck": self._journal.free_check(identity.company_id, since)})
        membership = self._membership(key, connection_id, identity, self._expiry(now), since)
        items.insert(1, {"Put": {"TableName": self._table.name, "Item": membership}})
        reasons = transact(self._table, items)
        if reasons is None:
            return
        if len(reasons) == 3 and reasons[2].get("Code") == CONDITION_FAILED:
            raise JournalMoved
        if reasons[0].get("Code") != CONDITION_FAILED:
            raise TransactionCancelled([str(reason.get("Code")) for reason in reasons])
        # The record as the condition saw it, in DynamoDB's attribute-value form: only its names matter here.
        seen: dict[str, Any] | None = reasons[0].get("Item")
        if not is_open(seen):
            raise _closed()
        if key in (seen or {}).get("rooms", {}).get("SS", []):
            return  # in that room already: joining again changes nothing
        raise RoomcastError(
            ErrorCode.CONFLICT, f"a connection can be in at most {self._max_rooms} rooms: leave one first"
        )

    def leave(self, connection_id: str, company_id: str, room: Room) -> None:
        key = room.key(company_id)
        membership = {"pk": membership_pk(key, connection_id), "sk": connection_id}
        reasons = transact(
            self._table,
            [
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": connection_key(connection_id),
                        "UpdateExpression": "DELETE rooms :r REMOVE joined.#room",
                        # Never recreate the record of a connection that closed meanwhile.
                        "ConditionExpression": OPEN,
                        "ExpressionAttributeNames": {"#room": key},
                        "ExpressionAttributeValues": {":r": {key}},
                    }
                },
                {"Delete": {"TableName": self._table.name, "Key": membership}},
            ],
        )
        if reasons is None:
            return
        if reasons[0].get("Code") != CONDITION_FAILED:
            raise TransactionCancelled([str(reason.get("Code")) for reason in reasons])
        # Closed: its close removes the memberships it lists; this one goes too, whatever it lists.
        self._table.delete_item(Key=membership)

    def heartbeat_due(self, now: datetime, shard: int) -> Iterator[list[str]]:
        """The Socket.IO connections of one shard of the heartbeat index that may still be open: those opened in
        the hours API Gateway lets live."""
        if not 0 <= shard < self.hour_index_shards:
            raise ValueError(f"no heartbeat shard {shard} of {self.hour_index_shards}")
        hours = int(MAX_CONNECTION_LIFE / timedelta(hours=1)) + 1
        for hours_back in range(hours + 1):
            bucket = _heartbeat_pk(now - timedelta(hours=hours_back), shard)
            for items in query_pages(
                self._table, KeyConditionExpression=Key("pk").eq(bucket), ProjectionExpression="sk"
            ):
                yield [str(item["sk"]) for item in items]

    def start_session(self, connection_id: str, now: datetime) -> None:
        """Once its open packet is delivered, a Socket.IO connection joins its home rooms and the heartbeat's
        index: an event or a ping before the open packet would break the client's handshake. The record
        names them all first, so a close that runs meanwhile either removes them or, for any written after
        it, leaves them to the 410 their next post meets."""
        bucket = _heartbeat_pk(now, self._shard(connection_id))
        try:
            record = self._table.update_item(
                Key=connection_key(connection_id),
                UpdateExpression="SET heartbeat = :bucket",
                ConditionExpression=OPEN,
                ExpressionAttributeValues={":bucket": bucket},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if conditional_check_failed(error):
                return  # closed already: nothing to join, nothing to ping
            raise
        identity = _connection(record).identity
        expires = int(str(record["ttl"]))
        # A session's rooms are joined when its namespace connects, at a cut of the journal (`attach`).
        homes = () if identity.recovery else home_rooms(identity.company_id, identity.user_id)
        with self._table.batch_writer() as batch:
            for room in homes:
                batch.put_item(Item=self._membership(room.key(identity.company_id), connection_id, identity, expires))
            # API Gateway closes it within 2 hours; a missed close leaves the item that long at most.
            last_ping = int((now + MAX_CONNECTION_LIFE).timestamp())
            batch.put_item(Item={"pk": bucket, "sk": connection_id, "ttl": last_ping})

    def open_namespace(self, connection_id: str, namespace: str) -> None:
        """A Socket.IO namespace the connection has opened (CONNECT): its events are served from now on."""
        self._namespaces(connection_id, "ADD", namespace)

    def close_namespace(self, connection_id: str, namespace: str) -> None:
        self._namespaces(connection_id, "DELETE", namespace)

    def _namespaces(self, connection_id: str, operation: str, namespace: str) -> None:
        try:
            self._table.update_item(
                Key=connection_key(connection_id),
                UpdateExpression=f"{operation} namespaces :ns",
                # Never recreate the record of a connection that closed meanwhile.
                ConditionExpression=OPEN,
                ExpressionAttributeValues={":ns": {namespace}},
            )
        except ClientError as error:
            if conditional_check_failed(error):
                raise _closed() from error
            raise

    def online_users(self, company_id: str, cursor: str | None, limit: int, max_bytes: int) -> OnlinePage:
        """Users present (an open connection, or within the grace), in user id order after `cursor` (the last user
        id of the page before): at most `limit` of them, in a reply of `max_bytes`; `next_cursor` is the page's
        last user id while more follow. The company's presence partitions (decision 0107) are read at once, each
        from after the cursor, and merged; a user found twice (in their shard and, from before the deploy, in the
        unsharded key, which is shard 0's partition) is one entry, their connections counted once."""
        users: list[dict[str, Any]] = []
        room = ListRoom(max_bytes)
        for user_id, items in itertools.groupby(self._presence_merged(company_id, cursor, limit), _user_of):
            found = [item for item in items if is_present(item)]
            if not found:
                continue
            connections: set[str] = set().union(*(item.get("connections", set()) for item in found))
            user = {"userId": user_id, "connections": len(connections)}
            if len(users) == limit or not room.admits(user):
                return OnlinePage(users, users[-1]["userId"])
            users.append(user)
        return OnlinePage(users, None)

    def _presence_merged(self, company_id: str, cursor: str | None, limit: int) -> Iterator[dict[str, Any]]:
        """The company's presence items after `cursor`, every partition's merged in user id order. Each
        partition's first page is read at once, sized so that the partitions together hold about twice what a page
        of `limit` users takes (user ids spread evenly over the shards); a partition read to its page's end before
        the page is full reads its next."""
        partitions = presence_partitions(company_id)
        page = min(limit + 1, math.ceil(2 * (limit + 1) / len(partitions)) + 1)
        queries = []
        for pk in partitions:
            condition = Key("pk").eq(pk) if cursor is None else Key("pk").eq(pk) & Key("sk").gt(cursor)
            queries.append({"KeyConditionExpression": condition, "Limit": page})
        firsts = [_PRESENCE_READS.submit(self._table.query, **query) for query in queries]
        streams = [self._presence_stream(query, first) for query, first in zip(queries, firsts, strict=True)]
        return heapq.merge(*streams, key=_user_of)

    def _presence_stream(self, query: dict[str, Any], first: Future[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """One partition's items, in user id order: its first page (read already), then page by page."""
        answer = first.result()
        while True:
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            answer = self._table.query(**query, ExclusiveStartKey=answer["LastEvaluatedKey"])

    def close_session(self, connection_id: str, namespace: str) -> str | None:
        """The client left a namespace: forget its session there; returns the session's pid, if it had one."""
        try:
            previous = self._table.update_item(
                Key=connection_key(connection_id),
                UpdateExpression="REMOVE sessions.#ns",
                ConditionExpression=f"{OPEN} AND attribute_exists(sessions)",
                ExpressionAttributeNames={"#ns": namespace},
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as error:
            if conditional_check_failed(error):
                return None
            raise
        sessions: dict[str, Any] = previous.get("Attributes", {}).get("sessions", {})
        pid = sessions.get(namespace)
        return None if pid is None else str(pid)

    def session_rooms(self, connection_id: str, session: tuple[str, str]) -> dict[str, int] | None:
        """The rooms a session's connection was in, each with the position it heard it from, open or closed
        (its tombstone keeps them for the recovery window); None while its record does not name the session
        (namespace, pid) yet: a connection that took the session over and has not named its rooms."""
        item = self._record(connection_id) or {}
        if item.get("sessions", {}).get(session[0]) != session[1]:
            return None
        return {str(key): int(str(since)) for key, since in item.get("joined", {}).items()}

    def attach(
        self,
        connection_id: str,
        identity: Identity,
        rooms: Mapping[str, int],
        cut: int,
        session: tuple[str, str],
        *,
        now: datetime,
    ) -> None:
        """Write a session's memberships (`rooms`: room key to the position the session has been in it since),
        each hearing its room live from `cut + 1`, on the condition that no position after the cut is reserved; and
        name the session (namespace, pid) and its rooms on the record. Raises JournalMoved when one is
        (nothing written), ConnectionGone when the connection closed (nothing written: `remember`). Up to 98
        rooms at once."""
        if self._journal is None:
            raise RuntimeError("sessions need the journal")
        keys = sorted(rooms)
        if len(keys) > TRANSACTION_ROOMS:
            raise ValueError(f"at most {TRANSACTION_ROOMS} rooms in one attach")
        since = cut + 1
        expression, names, values = _session_update(rooms, session)
        if keys:
            expression += " ADD rooms :rooms"
            values[":rooms"] = set(keys)
        expires = self._expiry(now)
        items: list[Any] = [
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": connection_key(connection_id),
                    "UpdateExpression": expression,
                    "ConditionExpression": OPEN,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            },
            {"ConditionCheck": self._journal.free_check(identity.company_id, since)},
            *(
                {
                    "Put": {
                        "TableName": self._table.name,
                        "Item": self._membership(key, connection_id, identity, expires, since),
                    }
                }
                for key in keys
            ),
        ]
        reasons = transact(self._table, items)
        if reasons is None:
            return
        if reasons[1].get("Code") == CONDITION_FAILED:
            raise JournalMoved
        if reasons[0].get("Code") == CONDITION_FAILED:
            raise ConnectionGone(connection_id)
        raise TransactionCancelled([str(reason.get("Code")) for reason in reasons])

    def remember(self, connection_id: str, rooms: Mapping[str, int], session: tuple[str, str]) -> None:
        """A session's connection closed before its rooms were written: name them on its tombstone all the
        same, since the session's next recovery reads its rooms there."""
        expression, names, values = _session_update(rooms, session)
        update_if(
            self._table,
            Key=connection_key(connection_id),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk) AND attribute_exists(joined)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    @staticmethod
    def _membership(
        key: str, connection_id: str, identity: Identity, expires: int, since: int | None = None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": membership_pk(key, connection_id),
            "sk": connection_id,
            "userId": identity.user_id,
            "ttl": expires,
        }
        # Absent for native connections: memberships written before codecs existed read as native.
        if identity.codec is not Codec.NATIVE:
            item["codec"] = str(identity.codec)
        if since is not None:
            item["since"] = since
        return item


def _session_update(rooms: Mapping[str, int], session: tuple[str, str]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The record's update naming a session and its rooms (with the position it has been in each since)."""
    keys = sorted(rooms)
    names = {"#ns": session[0]} | {f"#r{index}": key for index, key in enumerate(keys)}
    values: dict[str, Any] = {":pid": session[1]} | {f":s{index}": rooms[key] for index, key in enumerate(keys)}
    expression = "SET sessions.#ns = :pid" + "".join(f", joined.#r{index} = :s{index}" for index in range(len(keys)))
    return expression, names, values


def _closed() -> RoomcastError:
    return RoomcastError(ErrorCode.CONFLICT, "connection is closed")


def _failed_item(error: ClientError) -> dict[str, Any]:
    """The item a failed condition saw (`ReturnValuesOnConditionCheckFailure`), or none."""
    item: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
    return item


def _user_of(item: dict[str, Any]) -> str:
    return str(item["sk"])


def _connection(item: dict[str, Any]) -> Connection:
    identity = Identity(
        userId=item["userId"],
        companyId=item["companyId"],
        email=item.get("email"),
        exp=None if item.get("exp") is None else int(item["exp"]),
        codec=stored_codec(item),
        recovery=bool(item.get("recovery", False)),
    )
    return Connection(
        connection_id=item["connectionId"],
        identity=identity,
        room_keys=frozenset(item.get("rooms", set())),
        namespaces=frozenset(str(namespace) for namespace in item.get("namespaces", set())),
        sessions=tuple(sorted((str(ns), str(pid)) for ns, pid in item.get("sessions", {}).items())),
    )
