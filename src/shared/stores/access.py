"""Whether a user's access was ended: the access item of kick and revoke (docs/data-model.md).

  access#{companyId} / {userId}   revokedBefore    tokens issued before it (or with no `iat`) are refused
                                  sessionsEndedAt  connections and sessions started before it were ended

Both are ISO 8601 UTC with milliseconds and only ever move forward: an older event applied late (a retry,
EventBridge's at-least-once delivery) never re-admits a token or a session a newer one ended. The item has no
TTL: a revocation holds for as long as the tokens it refuses could otherwise be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.protocol.clock import iso
from shared.stores.dynamo import update_if

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


@dataclass(frozen=True)
class Access:
    revoked_before: datetime | None = None
    sessions_ended_at: datetime | None = None

    def refuses(self, issued_at: int | None) -> bool:
        """Whether a token issued at `issued_at` (its `iat`, in seconds; None when it has none) is revoked."""
        if self.revoked_before is None:
            return False
        return issued_at is None or issued_at < self.revoked_before.timestamp()


def access_key(company_id: str, user_id: str) -> dict[str, str]:
    return {"pk": f"access#{company_id}", "sk": user_id}


def parse_instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class AccessStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def read(self, company_id: str, user_id: str) -> Access:
        """One consistent GetItem: the authorizer's only read, and the $connect re-check's."""
        item: dict[str, Any] = self._table.get_item(Key=access_key(company_id, user_id), ConsistentRead=True).get(
            "Item", {}
        )
        return Access(
            revoked_before=parse_instant(item.get("revokedBefore")),
            sessions_ended_at=parse_instant(item.get("sessionsEndedAt")),
        )

    def end_sessions(self, company_id: str, user_id: str, at: datetime) -> None:
        """Every connection and session of the user started before `at` is over (Disconnect, RevokeTokens)."""
        self._advance(company_id, user_id, "sessionsEndedAt", at)

    def revoke(self, company_id: str, user_id: str, issued_before: datetime) -> None:
        """Tokens of the user issued before `issued_before` are refused from now on (RevokeTokens)."""
        self._advance(company_id, user_id, "revokedBefore", issued_before)

    def _advance(self, company_id: str, user_id: str, attribute: str, to: datetime) -> None:
        # Lexical order is time order: every value is written by iso(), at the same width.
        update_if(
            self._table,
            Key=access_key(company_id, user_id),
            UpdateExpression="SET #at = :at",
            ConditionExpression="attribute_not_exists(#at) OR #at < :at",
            ExpressionAttributeNames={"#at": attribute},
            ExpressionAttributeValues={":at": iso(to)},
        )
