"""A namespace's routes and the one place where every invocation is parsed, logged, measured and answered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.clock import utc_now
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import (
    Frame,
    FrameError,
    InboundFrame,
    Outcome,
    encode,
    error_frame,
    frame_text,
    parse_frame,
    reply_frame,
)
from shared.protocol.identity import Identity, identity_from_authorizer
from shared.protocol.websocket import WebSocketEvent
from shared.stores.ratelimit import Admission
from shared.wiring.services import services
from shared.wiring.settings import settings

Data = TypeVar("Data", bound=BaseModel)
LambdaResponse = dict[str, Any]


@dataclass(frozen=True)
class Request:
    connection_id: str
    identity: Identity
    frame: InboundFrame
    now: datetime


Handler = Callable[[Request, Any], Outcome | None]
# A native frame as the connection's codec sends it.
Encoder = Callable[[Frame], str]


class Closing(Exception):
    """The connection was told why and closed; there is nothing left to answer."""


@dataclass(frozen=True)
class Route:
    model: type[BaseModel]
    handler: Handler


def validation_message(error: ValidationError) -> str:
    """The first problem, located in the frame, without echoing the input back."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"data.{where}: {first['msg']}" if where else f"data: {first['msg']}"


class Namespace:
    """Routes of one Lambda function. Register actions with `@namespace.action(name, Model)`;
    export `namespace.lambda_handler` as the function's handler."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.routes: dict[str, Route] = {}
        self.lambda_handler = websocket_entry(self.handle)

    def action(self, name: str, model: type[Data]) -> Callable[[Callable[[Request, Data], Outcome | None]], Any]:
        def register(handler: Callable[[Request, Data], Outcome | None]) -> Any:
            self.routes[name] = Route(model, handler)
            return handler

        return register

    def dispatch(self, event: WebSocketEvent, now: datetime) -> Frame | None:
        """Answer one native frame: with the action's reply, or with the error that stopped it."""
        parsed: InboundFrame | FrameError
        try:
            parsed = parse_frame(frame_text(event.body, event.is_base64_encoded), settings().limits.max_frame_bytes)
        except FrameError as error:
            parsed = error
        authorizer = event.request_context.raw_event.get("authorizer")
        return self.perform(event.request_context.connection_id, authorizer, parsed, now, encoder=encode)

    def perform(
        self,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        parsed: InboundFrame | FrameError,
        now: datetime,
        *,
        encoder: Encoder,
        opened: str | None = None,
    ) -> Frame | None:
        """Perform one decoded frame, whichever codec read it; `encoder` encodes what is pushed before a
        close. `opened`: the Socket.IO namespace it was emitted in, which the connection must have opened."""
        frame = parsed if isinstance(parsed, InboundFrame) else None
        try:
            # Every frame counts against the connection's rate, garbage included.
            admission = admit(connection_id, frame, now, encoder)
            if isinstance(parsed, FrameError):
                raise parsed
            assert frame is not None
            if opened is not None and opened not in admission.namespaces:
                raise RoomcastError(ErrorCode.BAD_REQUEST, f"namespace {opened} is not connected")
            logger.append_keys(action=frame.action)
            metrics.add_metric(name="Actions", unit=MetricUnit.Count, value=1)
            route = self.routes.get(frame.action)
            if route is None:
                raise RoomcastError(ErrorCode.UNKNOWN_ACTION, f"no action named {frame.action!r}")
            identity = identity_from_authorizer(authorizer)
            try:
                data = route.model.model_validate(frame.data)
            except ValidationError as error:
                raise RoomcastError(ErrorCode.BAD_REQUEST, validation_message(error)) from error
            outcome = route.handler(Request(connection_id, identity, frame, now), data)
        except Closing:
            return None
        except FrameError as error:
            return failed(error, error.ack_id, error.action)
        except RoomcastError as error:
            return failed(error, *_addressed(frame))
        except Exception:
            logger.exception("action failed")
            metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)
            internal = RoomcastError(ErrorCode.INTERNAL, "internal error, try again later")
            return error_frame(internal, *_addressed(frame))
        if outcome is None:
            return None
        return reply_frame(frame, outcome, self.name)

    def handle(self, event: WebSocketEvent) -> LambdaResponse:
        reply = self.dispatch(event, utc_now())
        return respond(reply)


def admit(connection_id: str, frame: InboundFrame | None, now: datetime, encoder: Encoder) -> Admission:
    """Refuse the frame when the token has expired or the connection exceeds its rate. Both close the
    connection (expiry at once, flooding after repeated refusals), telling the client why first."""
    config = settings()
    runtime = services()
    admission = runtime.limiter.admit(connection_id, now)
    expired = admission.exp is not None and now.timestamp() > admission.exp + config.jwt_leeway_seconds
    if expired:
        refusal = RoomcastError(ErrorCode.TOKEN_EXPIRED, "token expired: reconnect with a new token")
    elif not admission.allowed:
        metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)
        refusal = RoomcastError(
            ErrorCode.RATE_LIMITED, f"more than {config.rate_per_second:g} actions per second: slow down"
        )
        if admission.strikes < config.rate_strikes_to_close:
            raise refusal
    else:
        return admission
    # The reply cannot ride on the route response of a connection closed before it returns.
    runtime.hub.send(connection_id, encoder(error_frame(refusal, *_addressed(frame))))
    runtime.hub.close(connection_id)
    logger.info("connection closed", extra={"code": str(refusal.code)})
    raise Closing


def failed(error: RoomcastError, ack_id: str | None, action: str | None) -> Frame:
    logger.info("action refused", extra={"code": str(error.code), "reason": error.message})
    metrics.add_metric(name="RefusedActions", unit=MetricUnit.Count, value=1)
    return error_frame(error, ack_id, action)


def _addressed(frame: InboundFrame | None) -> tuple[str | None, str | None]:
    """The ackId and action an error answers, as far as the frame could be read."""
    return (frame.ack_id, frame.action) if frame is not None else (None, None)


def respond(frame: Frame | None) -> LambdaResponse:
    """With a route response configured, API Gateway sends `body` back on the caller's connection."""
    if frame is None:
        return {"statusCode": 200}
    return {"statusCode": 200, "body": encode(frame)}


def websocket_entry(
    handle: Callable[[WebSocketEvent], LambdaResponse],
) -> Callable[[dict[str, Any], LambdaContext], LambdaResponse]:
    """Wrap a WebSocket route handler with logging keys, the correlation id, metrics and tracing."""

    @instrumented(correlation_id_path="requestContext.requestId")
    def entry(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
        parsed = WebSocketEvent.of(event)
        request_context = parsed.request_context
        authorizer = request_context.raw_event.get("authorizer") or {}
        logger.append_keys(
            connection_id=request_context.connection_id,
            route_key=request_context.route_key,
            user_id=authorizer.get("userId"),
            company_id=authorizer.get("companyId"),
        )
        return handle(parsed)

    return entry
