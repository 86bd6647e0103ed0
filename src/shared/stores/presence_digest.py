"""A large company's presence changes, pending until their digest (decision 0089). In the connections table:

  presencedigest#{companyId} / online      how many of the company's users are present: shard 0 of the count
  presencecount#{companyId}#{1..15} / online
                                           the count's other shards; a change ADDs to one at random, and the
                                           count is their sum (decision 0099)
  presencedigest#{companyId} / flush       the digest scheduled (`flush`: its token), if one is
  presencedigest#{companyId}#{token}[#{1..15}] / user#{userId}
                                           a user's change pending for that digest, in the user's shard (none
                                           for shard 0): `was` (the state before the first change of the
                                           interval) and `now` (the latest)
  presencedigest#{companyId}#{token}[#{1..15}] / closed
                                           the shard's marker, written by the flush: no change joins it since
  presencedigest#{companyId}#{token} / claim
                                           which delivery of the digest's message announces it, and `announced`

A change goes into the digest its `flush` item names, in one transaction with a check that its shard of the
digest is not `closed`; the flush first removes that name, then marks every shard `closed`, then reads the
digest's changes: a change either reached the digest before it was read or goes to the next one. The count
and the changes are spread over DIGEST_SHARDS partitions each, and the check is in the change's own shard:
the graces of a storm's agents end together, thousands of changes in one second, more than one partition
takes (DynamoDB: 1,000 write and 3,000 read units a second; decision 0099).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from shared.stores.dynamo import (
    CONDITION_FAILED,
    TransactionCancelled,
    conditional_check_failed,
    get_many,
    query_pages,
    transact,
    update_if,
)
from shared.stores.rooms import hour_index_shard

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

USER_PREFIX = "user#"
CLAIM_SK = "claim"
CLOSED_SK = "closed"
# A digest's changes outlive the delay queue's retries of its message (at most 15 minutes' delay, 5 receives).
DIGEST_LIFE = timedelta(days=1)
# A change meeting flush after flush (each takes the digest it was about to join) tries again this often.
RECORD_ATTEMPTS = 5
# Partitions of a company's count, and of a digest's changes. A constant, not a setting: a changed count would
# leave the count's other shards out of its sum, and a digest's changes out of its flush.
DIGEST_SHARDS = 16


@dataclass(frozen=True)
class Count:
    online: int | None
    """Users present in the company, after this change; None when a digest was scheduled (the count is not read:
    the change joins the digest whatever it is)."""
    flush: str | None
    """The digest scheduled, if one is: while it is, every change joins a digest."""


@dataclass(frozen=True)
class PendingChange:
    user_id: str
    was_online: bool
    online: bool


class DigestMoved(Exception):
    """The digest a change was to join was flushed meanwhile, again and again."""


def _company_pk(company_id: str) -> str:
    return f"presencedigest#{company_id}"


def _digest_pk(company_id: str, token: str, shard: int = 0) -> str:
    """Shard 0 is the digest's own key, where its claim is, and where its changes were before they were sharded."""
    base = f"presencedigest#{company_id}#{token}"
    return base if shard == 0 else f"{base}#{shard}"


def _count_key(company_id: str, shard: int) -> dict[str, str]:
    """Shard 0 is the count's unsharded item: the count a company had before the shards stays in the sum."""
    pk = _company_pk(company_id) if shard == 0 else f"presencecount#{company_id}#{shard}"
    return {"pk": pk, "sk": "online"}


def user_shard(user_id: str) -> int:
    """The shard of a digest a user's changes go to: always the same, so that `was` keeps their first change."""
    return hour_index_shard(user_id, DIGEST_SHARDS)


def _flush_key(company_id: str) -> dict[str, str]:
    return {"pk": _company_pk(company_id), "sk": "flush"}


class PresenceDigestStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def add(self, company_id: str, delta: int) -> None:
        """Add `delta` (+1 online, -1 offline) to one shard of the company's count, chosen at random: the writes
        spread evenly, and the sum is exact by `ADD` alone."""
        shard = random.randrange(DIGEST_SHARDS)  # noqa: S311 - spreading writes, not secrecy
        self._table.update_item(
            Key=_count_key(company_id, shard),
            UpdateExpression="ADD #online :delta",
            ExpressionAttributeNames={"#online": "online"},
            ExpressionAttributeValues={":delta": delta},
        )

    def online(self, company_id: str) -> int:
        """The company's count: its shards summed, read consistently (a change reads its own addition)."""
        keys = [_count_key(company_id, shard) for shard in range(DIGEST_SHARDS)]
        return sum(int(str(item.get("online", 0))) for item in get_many(self._table, keys, consistent=True))

    def count(self, company_id: str, delta: int) -> Count:
        """Add `delta` to the company's count; and whether a digest is due. The count is summed only when none is:
        in a storm, when changes come by the thousand a second, one is, and no change reads the shards."""
        self.add(company_id, delta)
        flush = self.scheduled(company_id)
        return Count(online=self.online(company_id) if flush is None else None, flush=flush)

    def scheduled(self, company_id: str) -> str | None:
        """The digest changes join now, read eventually consistently (half a read unit: every change of a storm
        reads it). A stale answer costs a retry, never a change: a closed digest's markers refuse it, and a
        digest scheduled meanwhile is found by `schedule`'s conditional write."""
        item = self._table.get_item(Key=_flush_key(company_id)).get("Item") or {}
        flush = item.get("flush")
        return None if flush is None else str(flush)

    def schedule(self, company_id: str) -> tuple[str, bool]:
        """The digest changes join now: the one scheduled, or a new one. True: this call made it, and must see
        that it is flushed (one flush a digest, whatever the changes racing to make one)."""
        token = secrets.token_hex(8)
        try:
            self._table.update_item(
                Key=_flush_key(company_id),
                UpdateExpression="SET flush = :token",
                ConditionExpression="attribute_not_exists(flush)",
                ExpressionAttributeValues={":token": token},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            found: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            flush = found.get("flush", {}).get("S")
            if flush is None:  # flushed between the check and the read: make the next one
                return self.schedule(company_id)
            return str(flush), False
        return token, True

    def record(self, company_id: str, token: str, user_id: str, online: bool, now: datetime) -> bool:
        """Put the user's change in digest `token`, if that digest is not closed yet: in one transaction with a
        check that the user's shard of the digest has no `closed` marker, in that shard's own partition. False:
        it was flushed meanwhile (the change belongs to the next one)."""
        shard = user_shard(user_id)
        reasons = transact(
            self._table,
            [
                {
                    "ConditionCheck": {
                        "TableName": self._table.name,
                        "Key": {"pk": _digest_pk(company_id, token, shard), "sk": CLOSED_SK},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": {"pk": _digest_pk(company_id, token, shard), "sk": f"{USER_PREFIX}{user_id}"},
                        # `was` keeps what colleagues knew before the interval: online then offline nets out.
                        "UpdateExpression": "SET was = if_not_exists(was, :was), #now = :now, #ttl = :ttl",
                        "ExpressionAttributeNames": {"#now": "now", "#ttl": "ttl"},
                        "ExpressionAttributeValues": {
                            ":was": not online,
                            ":now": online,
                            ":ttl": int((now + DIGEST_LIFE).timestamp()),
                        },
                    }
                },
            ],
        )
        if reasons is None:
            return True
        if reasons[0].get("Code") == CONDITION_FAILED:
            return False
        raise TransactionCancelled([str(reason.get("Code")) for reason in reasons])

    def close(self, company_id: str, token: str, now: datetime) -> None:
        """No change joins digest `token` from now on: `flush` stops naming it (the next change schedules
        another), then each shard gets its `closed` marker (a change that read `flush` before either fails its
        check, or landed before the marker and is read after it). Both steps hold when repeated."""
        update_if(
            self._table,
            Key=_flush_key(company_id),
            UpdateExpression="REMOVE flush",
            ConditionExpression="flush = :token",
            ExpressionAttributeValues={":token": token},
        )
        # UpdateItems, not a batch: every function that may flush a digest holds `UpdateItem` (template.yaml).
        for shard in range(DIGEST_SHARDS):
            self._table.update_item(
                Key={"pk": _digest_pk(company_id, token, shard), "sk": CLOSED_SK},
                UpdateExpression="SET #ttl = :ttl",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":ttl": int((now + DIGEST_LIFE).timestamp())},
            )

    def claim(self, company_id: str, token: str, delivery: str, now: datetime) -> bool:
        """Whether the message `delivery` announces digest `token`: not once it was announced, nor while another
        copy of the message holds it (a redelivery of the same message takes it again)."""
        try:
            self._table.update_item(
                Key={"pk": _digest_pk(company_id, token), "sk": CLAIM_SK},
                UpdateExpression="SET claimedBy = :me, #ttl = :ttl",
                ConditionExpression="attribute_not_exists(announced) AND "
                "(attribute_not_exists(claimedBy) OR claimedBy = :me)",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":me": delivery, ":ttl": int((now + DIGEST_LIFE).timestamp())},
            )
        except ClientError as error:
            if conditional_check_failed(error):
                return False
            raise
        return True

    def changes(self, company_id: str, token: str) -> list[PendingChange]:
        """The changes digest `token` holds, every shard's, read once it is closed: none can join it any more."""
        return [
            PendingChange(str(item["sk"])[len(USER_PREFIX) :], bool(item["was"]), bool(item["now"]))
            for shard in range(DIGEST_SHARDS)
            for items in query_pages(
                self._table,
                KeyConditionExpression=Key("pk").eq(_digest_pk(company_id, token, shard))
                & Key("sk").begins_with(USER_PREFIX),
                ConsistentRead=True,
            )
            for item in items
        ]

    def announced(self, company_id: str, token: str) -> None:
        self._table.update_item(
            Key={"pk": _digest_pk(company_id, token), "sk": CLAIM_SK},
            UpdateExpression="SET announced = :yes",
            ExpressionAttributeValues={":yes": True},
        )
