"""$default and the actions every namespace shares: `ping`, `auth:refresh`. Anything unrouted is answered here."""

from __future__ import annotations

from shared.actions import Empty, RefreshToken
from shared.app import Namespace, Request
from shared.clock import iso
from shared.errors import ErrorCode, RoomcastError
from shared.protocol import Outcome
from shared.runtime import services
from shared.settings import settings

session = Namespace(None)


@session.action("ping", Empty)
def ping(request: Request, _: Empty) -> Outcome:
    return Outcome({"timestamp": iso(request.now)}, event="pong")


@session.action("auth:refresh", RefreshToken)
def refresh(request: Request, data: RefreshToken) -> Outcome:
    """Extend the connection's life with a newer token for the same user and company; nothing else changes."""
    from shared.tokens import InvalidToken, jwt_secret, verify_token  # PyJWT only when a refresh comes

    try:
        renewed = verify_token(data.token, jwt_secret(), settings().jwt_leeway_seconds)
    except InvalidToken as error:
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "token is not valid") from error
    if (renewed.user_id, renewed.company_id) != (request.identity.user_id, request.identity.company_id):
        raise RoomcastError(ErrorCode.FORBIDDEN, "token is for another user")
    services().connections.extend(request.connection_id, renewed.exp)
    return Outcome({"exp": renewed.exp})


handler = session.lambda_handler
