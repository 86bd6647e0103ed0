"""Notifications per user, newest first, with unread ones in a sparse index (see docs/data-model.md).

  user#{companyId}#{userId} / n#{notificationId}   a notification; `unread` holds the pk while it is unread
  user#{companyId}#{userId} / #event#{eventId}     the event that created one, so a retried event adds none
Index `unread` (pk `unread`, sk `sk`) therefore holds only unread notifications: counting and listing them
never reads the rest of the user's history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from shared.protocol.errors import not_found
from shared.protocol.records import Notification
from shared.stores.dynamo import conditional_check_failed, put_once, query_pages

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

UNREAD_INDEX = "unread"
PREFIX = "n#"


def _pk(company_id: str, user_id: str) -> str:
    return f"user#{company_id}#{user_id}"


def _sk(notification_id: str) -> str:
    return f"{PREFIX}{notification_id}"


@dataclass(frozen=True)
class NotificationSlice:
    """Notifications newest first from the cursor; `has_more` when older ones remain."""

    notifications: list[Notification]
    has_more: bool


class NotificationStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def add(self, company_id: str, notification: Notification, source_event: str) -> bool:
        """Store a new, unread notification, once per source event: False when that event was stored before."""
        pk = _pk(company_id, notification.user_id)
        marker = {"pk": pk, "sk": f"#event#{source_event}", "notificationId": notification.id}
        item = {"pk": pk, "sk": _sk(notification.id), UNREAD_INDEX: pk, **notification.public()}
        if notification.data is not None:
            # Kept as the producer's JSON text: DynamoDB numbers would come back as Decimals (another type and
            # size than what was pushed), floats would not go in, and numbers past 38 digits would not fit.
            item["data"] = json.dumps(notification.data, ensure_ascii=False, separators=(",", ":"))
        return put_once(self._table, marker, item)

    def page(
        self, company_id: str, user_id: str, unread_only: bool, limit: int, cursor: str | None
    ) -> NotificationSlice:
        pk = _pk(company_id, user_id)
        # One more than asked: whether a next page exists is then known, so the last page says so (DynamoDB
        # returns a LastEvaluatedKey whenever Limit is reached, which would promise an empty page).
        query: dict[str, Any] = {"ScanIndexForward": False, "Limit": limit + 1}
        if unread_only:
            query |= {"IndexName": UNREAD_INDEX, "KeyConditionExpression": Key(UNREAD_INDEX).eq(pk)}
        else:
            query |= {"KeyConditionExpression": Key("pk").eq(pk) & Key("sk").begins_with(PREFIX)}
        if cursor is not None:
            start = {"pk": pk, "sk": _sk(cursor)}
            query["ExclusiveStartKey"] = start | ({UNREAD_INDEX: pk} if unread_only else {})
        result = self._table.query(**query)
        items = result.get("Items", [])
        return NotificationSlice([_notification(item) for item in items[:limit]], len(items) > limit)

    def unread_count(self, company_id: str, user_id: str) -> int:
        pk = _pk(company_id, user_id)
        total = 0
        query: dict[str, Any] = {
            "IndexName": UNREAD_INDEX,
            "KeyConditionExpression": Key(UNREAD_INDEX).eq(pk),
            "Select": "COUNT",
        }
        while True:
            result = self._table.query(**query)
            total += int(result.get("Count", 0))
            if "LastEvaluatedKey" not in result:
                return total
            query["ExclusiveStartKey"] = result["LastEvaluatedKey"]

    def mark_read(self, company_id: str, user_id: str, notification_id: str, read_at: str) -> Notification:
        """Mark one of the user's notifications read; reading it again keeps the first `readAt`."""
        try:
            result = self._table.update_item(
                Key={"pk": _pk(company_id, user_id), "sk": _sk(notification_id)},
                UpdateExpression="SET readAt = if_not_exists(readAt, :at) REMOVE #unread",
                ConditionExpression=Attr("pk").exists(),
                ExpressionAttributeNames={"#unread": UNREAD_INDEX},
                ExpressionAttributeValues={":at": read_at},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if conditional_check_failed(error):
                raise not_found("notification") from error
            raise
        return _notification(result["Attributes"])

    def mark_all_read(self, company_id: str, user_id: str, read_at: str) -> int:
        """Mark every unread notification read. Returns how many this call marked.

        The sparse index lists the unread ones, but its copies are eventually consistent: each is only a
        key to update, never an item to write back. The update changes nothing but `readAt` and `unread`,
        and only while the notification exists and is still unread, so a concurrent `notification:read`
        keeps its `readAt` and a stale copy never recreates or reverts anything."""
        pk = _pk(company_id, user_id)
        marked = 0
        for items in query_pages(
            self._table,
            IndexName=UNREAD_INDEX,
            KeyConditionExpression=Key(UNREAD_INDEX).eq(pk),
            ProjectionExpression="sk",
        ):
            for item in items:
                try:
                    self._table.update_item(
                        Key={"pk": pk, "sk": item["sk"]},
                        UpdateExpression="SET readAt = if_not_exists(readAt, :at) REMOVE #unread",
                        ConditionExpression=Attr(UNREAD_INDEX).exists(),
                        ExpressionAttributeNames={"#unread": UNREAD_INDEX},
                        ExpressionAttributeValues={":at": read_at},
                    )
                except ClientError as error:
                    if not conditional_check_failed(error):
                        raise
                    continue  # read meanwhile
                marked += 1
        return marked


def _notification(item: dict[str, Any]) -> Notification:
    data = item.get("data")
    return Notification.model_validate({**item, "data": json.loads(data)} if isinstance(data, str) else item)
