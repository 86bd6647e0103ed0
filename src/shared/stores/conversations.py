"""Conversations and their messages in DynamoDB (see docs/data-model.md, decisions 20 and 0087).

Each conversation is one item collection, keyed under its company; its seq counter and its senders' markers
have partition keys of their own, so that their write units do not share the messages' 1,000 a second:
  conv#{companyId}#{conversationId}    / #conversation          the conversation
  conv#{companyId}#{conversationId}    / msg#{seq:012d}         a message, or a skipped seq, keyed by its seq
  seq#{companyId}#{conversationId}     / #seq                   the last seq reserved, and a committed hint
  client#{companyId}#{conversationId}  / {sender}#{id}          a sender's clientMessageId, for idempotent sends
Every non-message sort key of a conversation starts with '#', which sorts below 'msg#'.

Seqs are a gap-free sequence (`shared.stores.sequence`): reserved with one atomic ADD on the counter, the message
put on the condition that its seq is unfilled, nothing returned above the first unfilled seq, a seq whose writer
will not fill it skipped at once, one whose writer died skipped by a reader a minute after a later item.
Items written with `uncounted` are not yet in the analytics counters: whoever removes the flag (a conditional
update) counts them, so a retry or redelivery counts what a failure left uncounted, once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from shared.protocol.clock import Clock
from shared.protocol.errors import ErrorCode, RoomcastError, not_found
from shared.protocol.ids import SEQ_DIGITS, seq_of
from shared.protocol.records import Conversation, Message
from shared.stores.dynamo import (
    CONDITION_FAILED,
    CONFLICT_ATTEMPTS,
    TRANSACTION_CONFLICT,
    TransactionCancelled,
    conditional_check_failed,
    conflict_pause,
    put_all,
    query_pages,
    update_if,
)
from shared.stores.sequence import FREE, SKIPPED, STORED_AT, Sequence, Taken, Walk

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

CONVERSATION_SK = "#conversation"
MESSAGE_PREFIX = "msg#"
UNCOUNTED = "uncounted"
MAX_SEQ = 10**SEQ_DIGITS - 1
COUNTER_SK = "#seq"
# A reservation is taken again only when its writer was presumed dead, or the counter lagged the messages.
SEQ_ATTEMPTS = 5


def _pk(company_id: str, conversation_id: str) -> str:
    return f"conv#{company_id}#{conversation_id}"


def _message_sk(seq: int) -> str:
    return f"{MESSAGE_PREFIX}{seq:0{SEQ_DIGITS}d}"


def _sequence_key(pk: str) -> dict[str, str]:
    return {"pk": "seq#" + pk.removeprefix("conv#"), "sk": COUNTER_SK}


def _marker_key(pk: str, sender_key: str) -> dict[str, str]:
    return {"pk": "client#" + pk.removeprefix("conv#"), "sk": sender_key}


@dataclass(frozen=True)
class MessageSlice:
    """Messages read from a cursor outward: oldest first when paging forward, newest first otherwise. Forward,
    `has_more` also when the page stops below a seq not yet filled while a later one is stored: that later one
    may have been broadcast, so its reader must ask again (from its last message, or the same cursor) rather
    than hear that nothing follows."""

    messages: list[Message]
    has_more: bool


@dataclass(frozen=True)
class Stored:
    """A message as stored; `created` is False when a retry found the first one its sender key stored."""

    message: Message
    created: bool


class ConversationStore:
    def __init__(self, table: Table, clock: Clock) -> None:
        self._table = table
        self._clock = clock

    def create(self, conversation: Conversation) -> None:
        try:
            self._table.put_item(
                Item={
                    "pk": _pk(conversation.company_id, conversation.id),
                    "sk": CONVERSATION_SK,
                    **conversation.public(),
                },
                ConditionExpression=Attr("pk").not_exists(),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            # A fresh id is taken only by this very write: botocore resent it after its answer was lost.
            found: dict[str, Any] = error.response.get("Item", {})  # type: ignore[assignment]
            if found.get("createdAt") != {"S": conversation.created_at} or found.get("createdBy") != {
                "S": conversation.created_by
            }:
                raise RoomcastError(ErrorCode.CONFLICT, "conversation already exists") from error

    def open(self, conversation: Conversation) -> bool:
        """Create a conversation that a backend event opened, not yet counted; False if it existed already."""
        item = {"pk": _pk(conversation.company_id, conversation.id), "sk": CONVERSATION_SK, **conversation.public()}
        try:
            self._table.put_item(Item={**item, UNCOUNTED: True}, ConditionExpression=Attr("pk").not_exists())
        except ClientError as error:
            if conditional_check_failed(error):
                return False
            raise
        return True

    def get(self, company_id: str, conversation_id: str) -> Conversation | None:
        """Consistent: a join, a send or an event right after a create or update must see it."""
        item = self._table.get_item(
            Key={"pk": _pk(company_id, conversation_id), "sk": CONVERSATION_SK}, ConsistentRead=True
        ).get("Item")
        return None if item is None else Conversation.model_validate(item)

    def require(self, company_id: str, conversation_id: str) -> Conversation:
        """The company's conversation; another company's looks exactly like a missing one."""
        conversation = self.get(company_id, conversation_id)
        if conversation is None:
            raise not_found("conversation")
        return conversation

    def update(
        self, company_id: str, conversation_id: str, changes: dict[str, Any], converted_at: str | None = None
    ) -> tuple[Conversation, bool]:
        """Set the given fields (None removes one) on an existing conversation. With `converted_at`, record
        the first conversion's time: a conversation converts once, however often its status is set.
        Returns the conversation as updated, and whether this update was its first conversion."""
        names = {f"#f{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values()) if value is not None}
        sets = [f"#f{i} = :v{i}" for i, value in enumerate(changes.values()) if value is not None]
        removes = [f"#f{i}" for i, value in enumerate(changes.values()) if value is None]
        if converted_at is not None:
            sets.append("convertedAt = if_not_exists(convertedAt, :converted)")
            values[":converted"] = converted_at
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets) if sets else "",
                "REMOVE " + ", ".join(removes) if removes else "",
            )
            if part
        )
        try:
            result = self._table.update_item(
                Key={"pk": _pk(company_id, conversation_id), "sk": CONVERSATION_SK},
                UpdateExpression=expression,
                ConditionExpression=Attr("pk").exists(),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                # The old item tells whether this update converted it first; the new one is derived from it.
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if conditional_check_failed(error):
                raise not_found("conversation") from error
            raise
        before = result["Attributes"]
        after = {name: value for name, value in {**before, **changes}.items() if value is not None}
        first_conversion = converted_at is not None and "convertedAt" not in before
        if first_conversion:
            after["convertedAt"] = converted_at
        return Conversation.model_validate(after), first_conversion

    def await_reply(self, company_id: str, conversation_id: str, since: str) -> None:
        """A contact wrote: the clock for the next agent reply starts, unless it already runs."""
        self._table.update_item(
            Key={"pk": _pk(company_id, conversation_id), "sk": CONVERSATION_SK},
            UpdateExpression="SET awaitingReplySince = if_not_exists(awaitingReplySince, :since)",
            ConditionExpression=Attr("pk").exists(),
            ExpressionAttributeValues={":since": since},
        )

    def stop_awaiting(self, company_id: str, conversation_id: str, since: str) -> bool:
        """An agent replied: stop the clock seen at `since`. False when another reply stopped it first."""
        try:
            self._table.update_item(
                Key={"pk": _pk(company_id, conversation_id), "sk": CONVERSATION_SK},
                UpdateExpression="REMOVE awaitingReplySince",
                ConditionExpression=Attr("awaitingReplySince").eq(since),
            )
        except ClientError as error:
            if conditional_check_failed(error):
                return False
            raise
        return True

    def add_message(
        self, company_id: str, conversation_id: str, compose: Callable[[int], Message], sender_key: str | None
    ) -> Stored:
        """Store the message `compose(seq)` builds at a seq reserved for it, flagged uncounted. With a sender key
        (sender and clientMessageId), a retry returns the first message instead, and skips the seq it reserved."""
        pk = _pk(company_id, conversation_id)
        seqs = self._seqs(pk)
        for _ in range(SEQ_ATTEMPTS):
            seq, committed = seqs.reserve()
            try:
                outcome = self._fill(pk, compose(seq), sender_key)
            except Exception:
                # A live writer skips its own seq at once, so that history does not wait out the reservation.
                seqs.skip_quietly(seq)
                raise
            if isinstance(outcome, Stored):
                seqs.stored(seq, committed)
                return outcome
            if not outcome.skipped:
                # A message is stored at the seq: the counter lags the messages.
                seqs.catch_up(seqs.last_stored())
            # Else this writer was presumed dead and its seq skipped: it takes another.
        raise RuntimeError(f"no seq after {SEQ_ATTEMPTS} reservations")

    def _seqs(self, pk: str) -> Sequence:
        return Sequence(self._table, self._clock, pk, _sequence_key(pk), MESSAGE_PREFIX)

    def _fill(self, pk: str, message: Message, sender_key: str | None) -> Stored | Taken:
        """Put the message at its reserved seq, on the condition that the seq is still unfilled."""
        seqs = self._seqs(pk)
        item = {"sk": _message_sk(message.seq), **message.public(), UNCOUNTED: True}
        stored = Stored(message.model_copy(update={"uncounted": True}), created=True)
        if sender_key is None:
            # A retried request whose first attempt was written (its answer lost) finds itself.
            taken = seqs.fill(item, lambda found: found.get("id") == {"S": message.id})
            return stored if taken is None else taken
        marker = {**_marker_key(pk, sender_key), "messageId": message.id}
        written = {**item, "pk": pk, STORED_AT: seqs.now_ms()}
        codes: list[str] = []
        for attempt in range(CONFLICT_ATTEMPTS):
            codes = put_all(self._table, [(marker, FREE), (written, FREE)]) or []
            if not codes:
                return stored
            if codes[0] == CONDITION_FAILED:  # a retry: the first message stands, the seq reserved now is skipped
                seqs.skip_quietly(message.seq)
                return Stored(self._first_message(pk, sender_key), created=False)
            if codes[1] == CONDITION_FAILED:
                found = self._table.get_item(Key={"pk": pk, "sk": _message_sk(message.seq)}, ConsistentRead=True)
                return Taken(skipped=SKIPPED in found.get("Item", {}))
            if TRANSACTION_CONFLICT not in codes:
                break
            conflict_pause(attempt)  # the same send retried at once, or a reader skipping this seq: again
        raise TransactionCancelled(codes)

    def _first_message(self, pk: str, sender_key: str) -> Message:
        marker = self._table.get_item(Key=_marker_key(pk, sender_key), ConsistentRead=True)
        seq = seq_of(str(marker["Item"]["messageId"]))
        assert seq is not None, "markers name message ids"
        item = self._table.get_item(Key={"pk": pk, "sk": _message_sk(seq)}, ConsistentRead=True)
        return Message.model_validate(item["Item"])

    def get_message(self, company_id: str, conversation_id: str, message_id: str) -> Message | None:
        seq = seq_of(message_id)
        if seq is None:
            return None
        item = self._table.get_item(
            Key={"pk": _pk(company_id, conversation_id), "sk": _message_sk(seq)}, ConsistentRead=True
        ).get("Item")
        return None if item is None or item.get("id") != message_id else Message.model_validate(item)

    def claim_message_count(self, company_id: str, message: Message) -> bool:
        """True for the one caller that takes the message's uncounted flag: it alone counts the message."""
        return self._claim(_pk(company_id, message.conversation_id), _message_sk(message.seq))

    def claim_opening_count(self, company_id: str, conversation_id: str) -> bool:
        """True for the one caller that takes an opened conversation's uncounted flag."""
        return self._claim(_pk(company_id, conversation_id), CONVERSATION_SK)

    def _claim(self, pk: str, sk: str) -> bool:
        return update_if(
            self._table,
            Key={"pk": pk, "sk": sk},
            UpdateExpression="REMOVE #flag",
            ConditionExpression=Attr(UNCOUNTED).exists(),
            ExpressionAttributeNames={"#flag": UNCOUNTED},
        )

    def edit_message(self, company_id: str, message: Message, author_id: str, content: str, at: str) -> Message:
        """The author's new content, marked edited at `at`."""
        return self._modify_message(company_id, message, author_id, {"content": content, "editedAt": at}, [])

    def delete_message(self, company_id: str, message: Message, author_id: str, at: str) -> Message:
        """A tombstone in the message's place: its content gone, marked deleted at `at`, so history keeps the
        message's seq and a client that missed the event still learns of it."""
        return self._modify_message(company_id, message, author_id, {"deleted": True, "deletedAt": at}, ["content"])

    def _modify_message(
        self, company_id: str, message: Message, author_id: str, changes: dict[str, Any], removes: list[str]
    ) -> Message:
        """Change a message only while it is still the author's and not deleted: a race loses with `conflict`."""
        names = {f"#s{i}": name for i, name in enumerate(changes)} | {f"#r{i}": name for i, name in enumerate(removes)}
        expression = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(changes)))
        if removes:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes)))
        try:
            result = self._table.update_item(
                Key={"pk": _pk(company_id, message.conversation_id), "sk": _message_sk(message.seq)},
                UpdateExpression=expression,
                ConditionExpression=Attr("fromUserId").eq(author_id) & Attr("deletedAt").not_exists(),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={f":s{i}": value for i, value in enumerate(changes.values())},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if conditional_check_failed(error):
                raise RoomcastError(ErrorCode.CONFLICT, "message changed meanwhile") from error
            raise
        return Message.model_validate(result["Attributes"])

    def messages(
        self, company_id: str, conversation_id: str, after: int | None, before: int | None, limit: int
    ) -> MessageSlice:
        """Messages with seq strictly between `after` and `before`, the nearest to `after` first when it is
        given, else the nearest to `before` (or the newest) first; never one above a seq not yet filled."""
        low = 1 if after is None else after + 1
        high = MAX_SEQ if before is None else before - 1
        if high < low:
            return MessageSlice([], has_more=False)
        pk = _pk(company_id, conversation_id)
        seqs = self._seqs(pk)
        walk = Walk()
        if after is not None:
            if seqs.watermark(after) < after:
                # A seq up to `after` is unfilled: nothing later is readable yet, but one may be stored (and
                # broadcast) already.
                return MessageSlice([], has_more=seqs.any_between(low, high))
            found = seqs.filled(low, high, limit + 1, walk)
        else:
            top = seqs.watermark(high)
            key = Key("pk").eq(pk) & Key("sk").between(_message_sk(low), _message_sk(top))
            pages = query_pages(
                self._table, KeyConditionExpression=key, ScanIndexForward=False, Limit=limit + 1, ConsistentRead=True
            )
            found = (item for page in pages for item in page) if top >= low else iter(())
        # One more than asked tells whether more remain.
        messages = list(itertools.islice((item for item in found if SKIPPED not in item), limit + 1))
        kept = [Message.model_validate(item) for item in messages[:limit]]
        return MessageSlice(kept, len(messages) > limit or walk.held)
