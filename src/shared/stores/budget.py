"""The posts-per-second budgets that large-room workers share (decisions 0052, 0092).

`@connections` posts count against API Gateway's account-wide request rate, with everything else the
account's APIs serve; a broadcast to a room of 10,000 split across concurrent workers must not take it all, and
one company's broadcasts must not take what the others need. One counter item per wall-clock second, in the
connections table: a worker claims a batch of posts with one conditional `ADD`, so however many workers run, at
most `per_second` posts are claimed within any one second: `postbudget#{companyId}#{second}` for the company's
share, then `postbudget#{second}` for the platform's.
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

    def take(self, wanted: int, now: datetime, scope: str | None = None) -> int:
        """Claim up to `wanted` posts in the current second; returns how many were granted (0: wait for the next).
        `scope`: whose budget (a company id); None, the platform's."""
        second = int(now.timestamp())
        key = f"postbudget#{second}" if scope is None else f"postbudget#{scope}#{second}"
        granted = min(wanted, self.per_second)
        while granted > 0:
            try:
                self._table.update_item(
                    Key={"pk": key, "sk": "-"},
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


class TenantBudgets:
    """A company's posts a second within the platform's: a claim is granted by the company's budget first, then
    by the platform's. Posts a company was granted that the platform then refused are not given back: its
    second is a little short, never over."""

    def __init__(self, table: Table, platform_per_second: int, company_per_second: int) -> None:
        self.platform = PostBudget(table, platform_per_second)
        self.company = PostBudget(table, min(company_per_second, platform_per_second))
        self._spent: dict[str | None, int] = {}
        """Budgets this container saw spent (a company's, or None: the platform's), and the second it was: asked
        again only after it. A storm's waiting chunks cost no refused write each; nor do every company's chunks
        that arrive after the platform's second is spent cost its item (the one key all companies share) one
        each, or their company a grant the platform then refuses."""

    def take(self, company_id: str, wanted: int, now: datetime) -> int:
        second = int(now.timestamp())
        if second in (self._spent.get(company_id), self._spent.get(None)):
            return 0
        granted = self.company.take(wanted, now, company_id)
        if granted == 0:
            self._saw_spent(company_id, second)
            return 0
        granted = self.platform.take(granted, now)
        if granted == 0:
            self._saw_spent(None, second)
        return granted

    def _saw_spent(self, budget: str | None, second: int) -> None:
        self._spent = {spent: at for spent, at in self._spent.items() if at == second}
        self._spent[budget] = second
