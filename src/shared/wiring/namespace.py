"""A namespace's routes, and the pipeline every message of a connection goes through, whichever codec read it:
parse, decide, admit, perform, answer (`run`, the one place a message is logged, measured and answered)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.domain.admission import Refusal, refusal
from shared.domain.together import start
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.actions import validation_error
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import (
    Frame,
    FrameError,
    InboundFrame,
    Outcome,
    encode,
    frame_text,
    parse_frame,
    reply_frame,
)
from shared.protocol.identity import Identity, identity_from_authorizer
from shared.protocol.outbound import error_frame
from shared.protocol.websocket import WebSocketEvent
from shared.stores.ratelimit import Admission
from shared.wiring.entry import LambdaResponse, respond
from shared.wiring.services import Services
from shared.wiring.settings import Settings

Data = TypeVar("Data", bound=BaseModel)
Read = TypeVar("Read")


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
# A native frame as the connection's codec sends it.
Encoder = Callable[[Frame], str]


@dataclass(frozen=True)
class Route:
    model: type[BaseModel]
    handler: Callable[..., Outcome | None]
    """`handler(request, data)`, or with reads `handler(request, data, what_they_read)`."""
    reads: Callable[[Request, Any], Any] | None = None
    """Reads that run while the frame is being admitted."""


# The pipeline every frame goes through, whichever codec read it: parse (the codec's), decide (no I/O), admit
# (the rate limit's write, and the route's reads meanwhile), perform, answer. Each stage has one result type.


@dataclass(frozen=True)
class Call:
    """Decided: a frame's route, request and validated data, before any I/O."""

    route: Route
    request: Request
    data: BaseModel

    def perform(self, ahead: Future[Any] | None) -> Outcome | None:
        if ahead is None:
            return self.route.handler(self.request, self.data)
        return self.route.handler(self.request, self.data, ahead.result())


@dataclass(frozen=True)
class Stop:
    """Decided: why a frame cannot be performed, said once the frame is admitted."""

    error: RoomcastError


Decision = Call | Stop


@dataclass(frozen=True)
class Admitted:
    """Admitted: the rate limiter's answer, and what the route's reads found meanwhile (or their failure)."""

    admission: Admission
    ahead: Future[Any] | None = None


@dataclass(frozen=True)
class Addressed:
    """Whom an answer goes to: the ackId and action of the frame, as far as it could be read, and how a frame
    is written for the connection's codec."""

    ack_id: str | None
    action: str | None
    encoder: Encoder

    @classmethod
    def of(cls, parsed: InboundFrame | FrameError, encoder: Encoder) -> Addressed:
        if isinstance(parsed, InboundFrame):
            return cls(parsed.ack_id, parsed.action, encoder)
        return cls(None, None, encoder)

    def error(self, error: RoomcastError) -> str:
        return self.encoder(error_frame(error, self.ack_id, self.action))


Decided = TypeVar("Decided")


def run(
    runtime: Services,
    connection_id: str,
    to: Addressed,
    *,
    decide: Callable[[], Decided],
    admit: Callable[[Decided], Admitted | Refusal],
    perform: Callable[[Decided, Admitted], str | None],
) -> str | None:
    """Decide, admit, perform and answer one message of a connection: the text sent back on it (None: nothing).
    The one place where a refusal, an error or a failure of any frame, action or Socket.IO packet is answered."""
    try:
        decision = decide()
        admitted = admit(decision)
        if isinstance(admitted, Refusal):
            return refuse(runtime, connection_id, to, admitted)
        return perform(decision, admitted)
    except FrameError as error:
        return failed(error, Addressed(error.ack_id, error.action, to.encoder))
    except RoomcastError as error:
        return failed(error, to)
    except Exception:
        logger.exception("action failed")
        metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)
        return to.error(RoomcastError(ErrorCode.INTERNAL, "internal error, try again later"))


def judged(runtime: Services, now: datetime, answer: Admission, ahead: Future[Any] | None = None) -> Admitted | Refusal:
    """The admit stage's rule (domain.admission) on the rate limiter's answer."""
    config = runtime.config
    refused = refusal(answer, now, config.jwt_leeway_seconds, config.rate_per_second, config.rate_strikes_to_close)
    return Admitted(answer, ahead) if refused is None else refused


def counted(runtime: Services, connection_id: str, now: datetime) -> Admitted | Refusal:
    """Admit a message by counting it against the connection's rate."""
    return judged(runtime, now, runtime.limiter.admit(connection_id, now))


def refuse(runtime: Services, connection_id: str, to: Addressed, refused: Refusal) -> str | None:
    """Answer a refusal; one that closes the connection is posted before the close, and leaves nothing to answer."""
    if refused.error.code is ErrorCode.RATE_LIMITED:
        metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)
    if not refused.closes:
        return failed(refused.error, to)
    # The reply cannot ride on the route response of a connection closed before it returns.
    runtime.hub.send(connection_id, to.error(refused.error))
    runtime.hub.close(connection_id)
    logger.info("connection closed", extra={"code": str(refused.error.code)})
    return None


def failed(error: RoomcastError, to: Addressed) -> str:
    logger.info("action refused", extra={"code": str(error.code), "reason": error.message})
    metrics.add_metric(name="RefusedActions", unit=MetricUnit.Count, value=1)
    return to.error(error)


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
        """Answer one native frame. `frame`: the event's frame when the caller has read it already (`read_native`)."""
        authorizer = event.request_context.raw_event.get("authorizer")
        parsed = read_native(event, runtime) if frame is None else frame
        return respond(
            self.perform(runtime, event.request_context.connection_id, authorizer, parsed, runtime.clock.now())
        )

    def perform(
        self,
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        parsed: InboundFrame | FrameError,
        now: datetime,
        *,
        encoder: Encoder = encode,
        opened: str | None = None,
    ) -> str | None:
        """Perform one decoded frame, whichever codec read it; `encoder` writes a frame for the connection's codec.
        `opened`: the Socket.IO namespace it was emitted in, which the connection must have opened. Every frame
        counts against the connection's rate, garbage included, and a refusal answers first: whatever else is
        wrong with the frame is said only once it is admitted."""

        def perform(decision: Decision, admitted: Admitted) -> str | None:
            if isinstance(parsed, InboundFrame):
                if opened is not None and opened not in admitted.admission.namespaces:
                    raise RoomcastError(ErrorCode.BAD_REQUEST, f"namespace {opened} is not connected")
                logger.append_keys(action=parsed.action)
                metrics.add_metric(name="Actions", unit=MetricUnit.Count, value=1)
            if isinstance(decision, Stop):
                raise decision.error
            outcome = decision.perform(admitted.ahead)
            reply = None if outcome is None else reply_frame(decision.request.frame, outcome, self.name)
            return None if reply is None else encoder(reply)

        return run(
            runtime,
            connection_id,
            Addressed.of(parsed, encoder),
            decide=lambda: self.decide(parsed, authorizer, connection_id, now, runtime),
            admit=lambda decision: self._admit(runtime, connection_id, decision, now),
            perform=perform,
        )

    @staticmethod
    def _admit(runtime: Services, connection_id: str, decision: Decision, now: datetime) -> Admitted | Refusal:
        """Admit the frame, running the route's reads meanwhile. What they read, or their failure, waits in
        the future admitted: a refusal is answered first, and drops it."""
        if isinstance(decision, Stop) or decision.route.reads is None:
            return counted(runtime, connection_id, now)
        limited = start(lambda: runtime.limiter.admit(connection_id, now))
        ahead: Future[Any] = Future()
        try:
            ahead.set_result(decision.route.reads(decision.request, decision.data))
        except Exception as error:
            ahead.set_exception(error)
        return judged(runtime, now, limited.result(), ahead)

    def decide(
        self,
        parsed: InboundFrame | FrameError,
        authorizer: dict[str, Any] | None,
        connection_id: str,
        now: datetime,
        runtime: Services,
    ) -> Decision:
        """The route, caller and data of a readable frame, or why it cannot be performed: no I/O."""
        if isinstance(parsed, FrameError):
            return Stop(parsed)
        route = self.routes.get(parsed.action)
        if route is None:
            return Stop(RoomcastError(ErrorCode.UNKNOWN_ACTION, f"no action named {parsed.action!r}"))
        try:
            identity = identity_from_authorizer(authorizer)
            data = route.model.model_validate(parsed.data)
        except ValidationError as error:
            return Stop(validation_error(error))
        except RoomcastError as error:
            return Stop(error)
        return Call(route, Request(connection_id, identity, parsed, now, runtime), data)


def read_native(event: WebSocketEvent, runtime: Services) -> InboundFrame | FrameError:
    """The native frame an event carries, or why it is not one (answered once the frame is admitted)."""
    try:
        return parse_frame(frame_text(event.body, event.is_base64_encoded), runtime.config.limits.max_frame_bytes)
    except FrameError as error:
        return error
