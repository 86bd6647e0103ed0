"""Verifying client JWTs: at $connect (the authorizer) and for auth:refresh. Only those two import PyJWT."""

from __future__ import annotations

import json
from typing import Any

import jwt
from pydantic import ValidationError

from shared.protocol.identity import SESSIONS_ENDED_AT, Identity

ALGORITHM = "HS256"
SECRET_MAX_AGE_SECONDS = 300
REQUIRED_CLAIMS = ("userId", "companyId")
# The key of the key/value pair when the secret was made as a key/value secret (the console's default).
SECRET_KEY_NAME = "JWT_SECRET_KEY_CALL"


_FIELD_NAMES_BESIDE_ALIASES = frozenset(
    name for name, field in Identity.model_fields.items() if field.alias is not None and field.alias != name
)


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
        # How the connection speaks, whether it has sessions and when its user was last kicked are the
        # handshake's to say, whatever the token claims; and a claim is read by its name in the token (`iat`),
        # never by the model's field name (`issued_at`), which would let a token without `iat` pass a revocation.
        not_claims = {"codec", "recovery", SESSIONS_ENDED_AT} | _FIELD_NAMES_BESIDE_ALIASES
        return Identity.model_validate({name: value for name, value in claims.items() if name not in not_claims})
    except (jwt.InvalidTokenError, ValidationError) as error:
        raise InvalidToken(type(error).__name__) from error


class MisconfiguredSecret(RuntimeError):
    """The secret's value is not a signing key: every handshake would fail, so this fails loudly instead."""


def signing_key(secret_string: str) -> str:
    """The HS256 key in a secret's value: the plain key, or a key/value secret's `JWT_SECRET_KEY_CALL`.
    Any other key/value secret is refused, since using its JSON text as the key would refuse every token."""
    if not secret_string.lstrip().startswith("{"):
        return secret_string
    try:
        pairs = json.loads(secret_string)
    except ValueError:
        return secret_string
    key = pairs.get(SECRET_KEY_NAME) if isinstance(pairs, dict) else None
    if not isinstance(key, str) or not key:
        names = sorted(pairs) if isinstance(pairs, dict) else []
        raise MisconfiguredSecret(
            f"the JWT secret is a key/value secret without a {SECRET_KEY_NAME} key (its keys: {names}); "
            f"store the CRM's key as the secret's plain text, or under the key {SECRET_KEY_NAME}"
        )
    return key


def jwt_secret(secret_arn: str | None, secret: str | None) -> str:
    """From Secrets Manager in AWS (cached five minutes), from the environment locally."""
    if secret_arn:
        from aws_lambda_powertools.utilities import parameters  # only where the secret is in Secrets Manager

        return signing_key(str(parameters.get_secret(secret_arn, max_age=SECRET_MAX_AGE_SECONDS)))
    if secret:
        return secret
    raise RuntimeError("set JWT_SECRET_ARN or JWT_SECRET_KEY_CALL")
