"""Conversations and their messages in DynamoDB (see docs/data-model.md).

Each conversation is one item collection, keyed under its company:
  conv#{companyId}#{conversationId} / #conversation          the conversation
  conv#{companyId}#{conversationId} / #client#{sender}#{id}   a sender's clientMessageId, for idempotent sends
  conv#{companyId}#{conversationId} / msg#{messageId}         a message; ids sort by time
Every non-message sort key starts with '#', which sorts below 'msg#', so message ranges never meet them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from shared.dynamo import conditional_check_failed, put_once
from shared.errors import ErrorCode, RoomcastError, not_found
from shared.records import Conversation, Message

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

CONVERSATION_SK = "#conversation"
MESSAGE_PREFIX = "msg#"


def _pk(company_id: str, conversation_id: str) -> str:
    return f"conv#{company_id}#{conversation_id}"


def _message_sk(message_id: str) -> str:
    return f"{MESSAGE_PREFIX}{message_id}"


@dataclass(frozen=True)
class MessageSlice:
    """Messages read from a cursor outward: oldest first when paging forward, newest first otherwise."""

    messages: list[Message]
    has_more: bool


class ConversationStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def create(self, conversation: Conversation) -> None:
        try:
            self._table.put_item(
                Item={
                    "pk": _pk(conversation.company_id, conversation.id),
                    "sk": CONVERSATION_SK,
                    **conversation.public(),
                },
                ConditionExpression=Attr("pk").not_exists(),
            )
        except ClientError as error:
            if conditional_check_failed(error):
                raise RoomcastError(ErrorCode.CONFLICT, "conversation already exists") from error
            raise

    def get(self, company_id: str, conversation_id: str) -> Conversation | None:
        item = self._table.get_item(Key={"pk": _pk(company_id, conversation_id), "sk": CONVERSATION_SK}).get("Item")
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

    def add_message(self, company_id: str, message: Message, sender_key: str | None) -> tuple[Message, bool]:
        """Store a message. With a sender key (sender and clientMessageId), a retry returns the first
        message and False instead of storing a second one."""
        pk = _pk(company_id, message.conversation_id)
        item = {"pk": pk, "sk": _message_sk(message.id), **message.public()}
        if sender_key is None:
            self._table.put_item(Item=item)
            return message, True
        marker = {"pk": pk, "sk": f"#client#{sender_key}", "messageId": message.id}
        if put_once(self._table, marker, item):
            return message, True
        return self._first_message(pk, sender_key), False

    def _first_message(self, pk: str, sender_key: str) -> Message:
        marker = self._table.get_item(Key={"pk": pk, "sk": f"#client#{sender_key}"}, ConsistentRead=True)
        message_id = str(marker["Item"]["messageId"])
        item = self._table.get_item(Key={"pk": pk, "sk": _message_sk(message_id)}, ConsistentRead=True)
        return Message.model_validate(item["Item"])

    def get_message(self, company_id: str, conversation_id: str, message_id: str) -> Message | None:
        item = self._table.get_item(
            Key={"pk": _pk(company_id, conversation_id), "sk": _message_sk(message_id)}, ConsistentRead=True
        ).get("Item")
        return None if item is None else Message.model_validate(item)

    def modify_message(
        self, company_id: str, message: Message, author_id: str, changes: dict[str, Any], removes: list[str]
    ) -> Message:
        """Change a message only while it is still the author's and not deleted: a race loses with `conflict`."""
        names = {f"#s{i}": name for i, name in enumerate(changes)} | {f"#r{i}": name for i, name in enumerate(removes)}
        expression = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(changes)))
        if removes:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes)))
        try:
            result = self._table.update_item(
                Key={"pk": _pk(company_id, message.conversation_id), "sk": _message_sk(message.id)},
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
        self, company_id: str, conversation_id: str, after: str | None, before: str | None, limit: int
    ) -> MessageSlice:
        pk = Key("pk").eq(_pk(company_id, conversation_id))
        forward = after is not None
        if after is not None and before is not None:
            key = pk & Key("sk").between(_message_sk(after), _message_sk(before))
        elif after is not None:
            key = pk & Key("sk").gt(_message_sk(after))
        elif before is not None:
            key = pk & Key("sk").between(MESSAGE_PREFIX, _message_sk(before))
        else:
            key = pk & Key("sk").begins_with(MESSAGE_PREFIX)
        # Two more than asked: one may be a cursor itself (BETWEEN is inclusive), one tells whether more remain.
        result = self._table.query(
            KeyConditionExpression=key, ScanIndexForward=forward, Limit=limit + 2, ConsistentRead=True
        )
        cursors = {_message_sk(cursor) for cursor in (after, before) if cursor is not None}
        items = [item for item in result.get("Items", []) if item["sk"] not in cursors]
        has_more = len(items) > limit or ("LastEvaluatedKey" in result and len(items) == limit)
        return MessageSlice([Message.model_validate(item) for item in items[:limit]], has_more)
