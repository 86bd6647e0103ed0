"""Who a connection is, as the authorizer context carries it to every route, and where it may connect from."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.protocol.clock import iso
from shared.protocol.codec import Codec
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.ids import ID_PATTERN

# The authorizer context key every route of a connection reads the user's access marker from.
SESSIONS_ENDED_AT = "sessionsEndedAt"


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    user_id: str = Field(alias="userId", pattern=ID_PATTERN)
    company_id: str = Field(alias="companyId", pattern=ID_PATTERN)
    email: str | None = Field(default=None, max_length=320)
    exp: int | None = None
    codec: Codec = Codec.NATIVE
    """How the connection speaks (docs/socketio.md), chosen at the handshake: never a token's claim."""
    issued_at: int | None = Field(default=None, alias="iat")
    """The token's `iat`, which a revocation is judged by; the authorizer does not pass it on."""
    sessions_ended_at: datetime | None = Field(default=None, alias="sessionsEndedAt")
    """The user's last kick or revocation as the authorizer read it at the handshake (absent: none). A
    connection or session that started before a later one is over (docs/protocol.md, kick and revoke)."""
    recovery: bool = False
    """The connection asked for sessions (`recovery=1` in its query, decision 0065): chosen at the handshake."""

    @field_validator("user_id", "company_id", mode="before")
    @classmethod
    def _integer_ids_as_text(cls, value: Any) -> Any:
        """A token issuer may send numeric ids; they are the same ids as text (as API Gateway passes them)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("recovery", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        """API Gateway passes context values to routes as strings: `"1"`."""
        return value in (1, "1", True, "true")

    @field_validator("exp", "issued_at", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        """RFC 7519 allows a fractional NumericDate; the whole second before it never outlives the token.
        API Gateway passes authorizer context values to routes as strings."""
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return value
        if isinstance(value, float) and math.isfinite(value):
            return math.floor(value)
        return value

    def authorizer_context(self) -> dict[str, str | int]:
        """API Gateway context values must be strings, numbers or booleans: absent claims are left out."""
        context: dict[str, str | int] = {"userId": self.user_id, "companyId": self.company_id}
        if self.email is not None:
            context["email"] = self.email
        if self.exp is not None:
            context["exp"] = self.exp
        if self.codec is not Codec.NATIVE:
            context["codec"] = str(self.codec)
        if self.recovery:
            context["recovery"] = 1
        if self.sessions_ended_at is not None:
            context[SESSIONS_ENDED_AT] = iso(self.sessions_ended_at)
        return context


def identity_from_authorizer(context: dict[str, Any] | None) -> Identity:
    """Routes trust only what the authorizer put in the request context."""
    try:
        return Identity.model_validate(context or {})
    except ValidationError as error:
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "connection is not authenticated") from error


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin and are held to the list; servers and CLIs send none and pass.
    `*` allows any origin; `http://localhost:*` allows any port of that host."""
    if origin is None or "*" in allowed:
        return True
    for pattern in allowed:
        if pattern == origin:
            return True
        if pattern.endswith(":*") and origin.startswith(pattern[:-1]) and origin[len(pattern) - 1 :].isdigit():
            return True
    return False
