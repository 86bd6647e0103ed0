"""Whether a connection's frame is acted on: a decision on the rate limiter's answer, which also brings back
the token expiry from the connection's record (`Admission`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.protocol.errors import ErrorCode, RoomcastError
from shared.stores.ratelimit import Admission


@dataclass(frozen=True)
class Refusal:
    error: RoomcastError
    closes: bool
    """The connection is closed after it is told why."""


def expired(exp: int | None, now: datetime, leeway_seconds: int) -> bool:
    """Whether a token that expires at `exp` (seconds since the epoch; None: never) may no longer be acted on."""
    return exp is not None and now.timestamp() > exp + leeway_seconds


def refusal(
    admission: Admission, now: datetime, leeway_seconds: int, per_second: float, strikes_to_close: int
) -> Refusal | None:
    """None to act on the frame. An expired token closes the connection at once, whatever the rate;
    flooding is refused, and closes the connection after `strikes_to_close` refusals in a row."""
    if expired(admission.exp, now, leeway_seconds):
        return Refusal(RoomcastError(ErrorCode.TOKEN_EXPIRED, "token expired: reconnect with a new token"), True)
    if not admission.allowed:
        error = RoomcastError(ErrorCode.RATE_LIMITED, f"more than {per_second:g} actions per second: slow down")
        return Refusal(error, closes=admission.strikes >= strikes_to_close)
    return None
