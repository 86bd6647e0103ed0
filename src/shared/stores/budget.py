"""The posts-per-second budget that large-room workers share (decision 0052).

`@connections` posts count against API Gateway's account-wide request rate, with everything else the
account's APIs serve; a broadcast to a room of 10,000 split across concurrent workers must not take it all.
One counter item per wall-clock second, in the connections table: a worker claims a batch of posts with one
conditional `ADD`, so however many workers run, at most `per_second` posts are claimed within any one second.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from shared.stores.dynamo import conditional_check_failed

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

# A second's counter outlives its second only long enough for a late claim to find it.
_KEEP_SECONDS = 120


class PostBudget:
    def __init__(self, table: Table, per_second: int) -> None:
        self._table = table
        self.per_second = per_second

    def take(self, wanted: int, now: datetime) -> int:
        """Claim up to `wanted` posts in the current second; returns how many were granted (0: wait for the next)."""
        second = int(now.timestamp())
        granted = min(wanted, self.per_second)
        while granted > 0:
            try:
                self._table.update_item(
                    Key={"pk": f"postbudget#{second}", "sk": "-"},
                    UpdateExpression="ADD used :n SET #ttl = if_not_exists(#ttl, :ttl)",
                    ConditionExpression="attribute_not_exists(used) OR used <= :room",
                    ExpressionAttributeNames={"#ttl": "ttl"},
                    ExpressionAttributeValues={
                        ":n": granted,
                        ":room": self.per_second - granted,
                        ":ttl": second + _KEEP_SECONDS,
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return granted
            except ClientError as error:
                if not conditional_check_failed(error):
                    raise
                # Others took part of this second: ask for what is left of it (always less than asked, so this ends).
                old: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
                granted = self.per_second - int(old.get("used", {}).get("N", self.per_second))
        return 0
