"""A namespace's routes and the one place where every invocation is parsed, logged, measured and answered."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from shared.domain.admission import refusal
from shared.domain.together import start
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.actions import validation_error
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
from shared.wiring.services import Services
from shared.wiring.settings import Settings

Data = TypeVar("Data", bound=BaseModel)
Read = TypeVar("Read")
LambdaResponse = dict[str, Any]
Entry = Callable[[dict[str, Any], LambdaContext], LambdaResponse]


@dataclass(frozen=True)
class Request:
    """One admitted frame, with the services and configuration an action needs (decision 0046)."""

    connection_id: str
    identity: Identity
    frame: InboundFrame
    now: datetime
    services: Services

    @property
    def config(self) -> Settings:
        return self.services.config


Action = Callable[[Request, Data], Outcome | None]
ActionAfterReads = Callable[[Request, Data, Read], Outcome | None]
RequestOf = Callable[[InboundFrame, Identity], Request]
# A native frame as the connection's codec sends it.
Encoder = Callable[[Frame], str]


class Closing(Exception):
    """The connection was told why and closed; there is nothing left to answer."""


@dataclass(frozen=True)
class Route:
    model: type[BaseModel]
    handler: Callable[..., Outcome | None]
    """`handler(request, data)`, or with reads `handler(request, data, what_they_read)`."""
    reads: Callable[[Request, Any], Any] | None = None
    """Reads that run while the frame is being admitted."""


@dataclass(frozen=True)
class _Call:
    """A frame's route and validated data: everything decided before any I/O."""

    route: Route
    request: Request
    data: BaseModel


class Namespace:
    """Routes of one Lambda function: register actions with `@namespace.action(name, Model)`, and answer an
    invocation with `namespace.handle(event, services)` from the function's `handler`."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.routes: dict[str, Route] = {}

    def action(self, name: str, model: type[Data]) -> Callable[[Action[Data]], Action[Data]]:
        def register(handler: Action[Data]) -> Action[Data]:
            self.routes[name] = Route(model, handler)
            return handler

        return register

    def action_after_reads(
        self, name: str, model: type[Data], reads: Callable[[Request, Data], Read]
    ) -> Callable[[ActionAfterReads[Data, Read]], ActionAfterReads[Data, Read]]:
        """An action whose first reads run alongside the rate limit's write (decision 0047). `reads` must
        not write: a refused frame changes nothing, and what it read is dropped unanswered."""

        def register(handler: ActionAfterReads[Data, Read]) -> ActionAfterReads[Data, Read]:
            self.routes[name] = Route(model, handler, reads)
            return handler

        return register

    def handle(
        self, event: WebSocketEvent, runtime: Services, frame: InboundFrame | FrameError | None = None
    ) -> LambdaResponse:
        """`frame`: the event's frame when the caller has read it already (`read_native`)."""
        return respond(self.dispatch(event, runtime, runtime.clock.now(), frame))

    def dispatch(
        self,
        event: WebSocketEvent,
        runtime: Services,
        now: datetime,
        frame: InboundFrame | FrameError | None = None,
    ) -> Frame | None:
        """Answer one native frame: with the action's reply, or with the error that stopped it."""
        authorizer = event.request_context.raw_event.get("authorizer")
        parsed = read_native(event, runtime) if frame is None else frame
        return self.perform(runtime, event.request_context.connection_id, authorizer, parsed, now, encoder=encode)

    def perform(
        self,
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        parsed: InboundFrame | FrameError,
        now: datetime,
        *,
        encoder: Encoder,
        opened: str | None = None,
    ) -> Frame | None:
        """Perform one decoded frame, whichever codec read it; `encoder` encodes what is pushed before a
        close. `opened`: the Socket.IO namespace it was emitted in, which the connection must have opened.
        Every frame counts against the connection's rate, garbage included, and a refusal answers first:
        whatever else is wrong with the frame is said only once it is admitted."""
        frame = parsed if isinstance(parsed, InboundFrame) else None
        try:
            call = self._decide(
                parsed, authorizer, lambda readable, identity: Request(connection_id, identity, readable, now, runtime)
            )
            admission, ahead = self._admit(runtime, connection_id, frame, call, now, encoder=encoder)
            if isinstance(parsed, FrameError):
                raise parsed
            assert frame is not None
            if opened is not None and opened not in admission.namespaces:
                raise RoomcastError(ErrorCode.BAD_REQUEST, f"namespace {opened} is not connected")
            logger.append_keys(action=frame.action)
            metrics.add_metric(name="Actions", unit=MetricUnit.Count, value=1)
            if isinstance(call, RoomcastError):
                raise call
            assert call is not None
            if ahead is None:
                outcome = call.route.handler(call.request, call.data)
            else:
                outcome = call.route.handler(call.request, call.data, ahead.result())
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

    @staticmethod
    def _admit(
        runtime: Services,
        connection_id: str,
        frame: InboundFrame | None,
        call: _Call | RoomcastError | None,
        now: datetime,
        *,
        encoder: Encoder,
    ) -> tuple[Admission, Future[Any] | None]:
        """Admit the frame, running the route's reads meanwhile. What they read, or their failure, waits in
        the future returned: a refusal is answered first, and drops it."""
        if not isinstance(call, _Call) or call.route.reads is None:
            return admit(runtime, connection_id, frame, now, encoder=encoder), None
        limited = start(lambda: runtime.limiter.admit(connection_id, now))
        ahead: Future[Any] = Future()
        try:
            ahead.set_result(call.route.reads(call.request, call.data))
        except Exception as error:
            ahead.set_exception(error)
        return enforce(runtime, connection_id, frame, limited.result(), now, encoder=encoder), ahead

    def _decide(
        self, parsed: InboundFrame | FrameError, authorizer: dict[str, Any] | None, request: RequestOf
    ) -> _Call | RoomcastError | None:
        """The route, caller and data of a readable frame, or why it cannot be performed: no I/O."""
        if isinstance(parsed, FrameError):
            return None
        route = self.routes.get(parsed.action)
        if route is None:
            return RoomcastError(ErrorCode.UNKNOWN_ACTION, f"no action named {parsed.action!r}")
        try:
            identity = identity_from_authorizer(authorizer)
            data = route.model.model_validate(parsed.data)
        except ValidationError as error:
            return validation_error(error)
        except RoomcastError as error:
            return error
        return _Call(route, request(parsed, identity), data)


def read_native(event: WebSocketEvent, runtime: Services) -> InboundFrame | FrameError:
    """The native frame an event carries, or why it is not one (answered once the frame is admitted)."""
    try:
        return parse_frame(frame_text(event.body, event.is_base64_encoded), runtime.config.limits.max_frame_bytes)
    except FrameError as error:
        return error


def admit(
    runtime: Services, connection_id: str, frame: InboundFrame | None, now: datetime, *, encoder: Encoder
) -> Admission:
    """Count the frame against the connection's rate, and refuse it when it may not be acted on."""
    return enforce(runtime, connection_id, frame, runtime.limiter.admit(connection_id, now), now, encoder=encoder)


def enforce(
    runtime: Services,
    connection_id: str,
    frame: InboundFrame | None,
    admission: Admission,
    now: datetime,
    *,
    encoder: Encoder,
) -> Admission:
    """Carry out the refusal the admission calls for, if any: raise it, or tell the client why and close."""
    config = runtime.config
    refused = refusal(admission, now, config.jwt_leeway_seconds, config.rate_per_second, config.rate_strikes_to_close)
    if refused is None:
        return admission
    if refused.error.code is ErrorCode.RATE_LIMITED:
        metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)
    if not refused.closes:
        raise refused.error
    # The reply cannot ride on the route response of a connection closed before it returns.
    runtime.hub.send(connection_id, encoder(error_frame(refused.error, *_addressed(frame))))
    runtime.hub.close(connection_id)
    logger.info("connection closed", extra={"code": str(refused.error.code)})
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


def websocket_entry(handler: Entry) -> Entry:
    """A WebSocket route's Lambda handler with logging keys, the correlation id, metrics and tracing."""

    @instrumented(correlation_id_path="requestContext.requestId")
    @functools.wraps(handler)
    def entry(event: dict[str, Any], context: LambdaContext) -> LambdaResponse:
        request_context = WebSocketEvent.of(event).request_context
        authorizer = request_context.raw_event.get("authorizer") or {}
        logger.append_keys(
            connection_id=request_context.connection_id,
            route_key=request_context.route_key,
            user_id=authorizer.get("userId"),
            company_id=authorizer.get("companyId"),
        )
        return handler(event, context)

    return cast(Entry, entry)
