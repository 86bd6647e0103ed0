"""Verifying client JWTs: at $connect (the authorizer) and for auth:refresh. Only those two import PyJWT."""

from __future__ import annotations

from typing import Any

import jwt
from pydantic import ValidationError

from shared.identity import Identity
from shared.settings import settings

ALGORITHM = "HS256"
SECRET_MAX_AGE_SECONDS = 300
REQUIRED_CLAIMS = ("userId", "companyId")


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


def jwt_secret() -> str:
    """From Secrets Manager in AWS (cached five minutes), from the environment locally."""
    config = settings()
    if config.jwt_secret_arn:
        from aws_lambda_powertools.utilities import parameters  # only where the secret is in Secrets Manager

        return str(parameters.get_secret(config.jwt_secret_arn, max_age=SECRET_MAX_AGE_SECONDS))
    if config.jwt_secret:
        return config.jwt_secret
    raise RuntimeError("set JWT_SECRET_ARN or JWT_SECRET_KEY_CALL")
