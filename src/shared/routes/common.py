"""The actions every namespace shares, which every connection may send: `ping`, `auth:refresh`."""

from __future__ import annotations

from shared.protocol.actions import Empty, RefreshToken
from shared.protocol.clock import iso
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Outcome
from shared.protocol.outbound import Pong, TokenRenewed, answer
from shared.wiring.namespace import Namespace, Request

# The actions of no namespace in particular, which every connection may send.
common = Namespace(None)


@common.action("ping", Empty)
def ping(request: Request, _: Empty) -> Outcome:
    return answer("ping", Pong(timestamp=iso(request.now)))


@common.action("auth:refresh", RefreshToken)
def refresh(request: Request, data: RefreshToken) -> Outcome:
    """Extend the connection's life with a newer token for the same user and company; nothing else changes."""
    from shared.domain.tokens import InvalidToken, jwt_secret, verify_token  # PyJWT only when a refresh comes

    config = request.config
    try:
        renewed = verify_token(
            data.token, jwt_secret(config.jwt_secret_arn, config.jwt_secret), config.jwt_leeway_seconds
        )
    except InvalidToken as error:
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "token is not valid") from error
    if (renewed.user_id, renewed.company_id) != (request.identity.user_id, request.identity.company_id):
        raise RoomcastError(ErrorCode.FORBIDDEN, "token is for another user")
    if request.services.access.read(renewed.company_id, renewed.user_id).refuses(renewed.issued_at):
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "token is not valid")
    request.services.connections.extend(request.connection_id, renewed.exp)
    return answer("auth:refresh", TokenRenewed(exp=renewed.exp))
