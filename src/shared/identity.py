"""Who a connection is: verified from a JWT once, at $connect, then carried in the authorizer context."""

from __future__ import annotations

from typing import Any

import jwt
from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ErrorCode, RoomcastError
from shared.ids import ID_PATTERN
from shared.settings import settings

ALGORITHM = "HS256"
SECRET_MAX_AGE_SECONDS = 300
REQUIRED_CLAIMS = ("userId", "companyId")


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    user_id: str = Field(alias="userId", pattern=ID_PATTERN)
    company_id: str = Field(alias="companyId", pattern=ID_PATTERN)
    email: str | None = Field(default=None, max_length=320)
    exp: int | None = None

    def authorizer_context(self) -> dict[str, str | int]:
        """API Gateway context values must be strings, numbers or booleans: absent claims are left out."""
        context: dict[str, str | int] = {"userId": self.user_id, "companyId": self.company_id}
        if self.email is not None:
            context["email"] = self.email
        if self.exp is not None:
            context["exp"] = self.exp
        return context


class InvalidToken(Exception):
    """The token cannot be trusted; the reason is for logs, never for the client."""


def verify_token(token: str, secret: str, leeway_seconds: int) -> Identity:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=leeway_seconds,
            options={"require": list(REQUIRED_CLAIMS)},
        )
        return Identity.model_validate(claims)
    except (jwt.InvalidTokenError, ValidationError) as error:
        raise InvalidToken(type(error).__name__) from error


def identity_from_authorizer(context: dict[str, Any] | None) -> Identity:
    """Routes trust only what the authorizer put in the request context."""
    try:
        return Identity.model_validate(context or {})
    except ValidationError as error:
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "connection is not authenticated") from error


def jwt_secret() -> str:
    """From Secrets Manager in AWS (cached five minutes), from the environment locally."""
    config = settings()
    if config.jwt_secret_arn:
        return str(parameters.get_secret(config.jwt_secret_arn, max_age=SECRET_MAX_AGE_SECONDS))
    if config.jwt_secret:
        return config.jwt_secret
    raise RuntimeError("set JWT_SECRET_ARN or JWT_SECRET_KEY_CALL")


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
