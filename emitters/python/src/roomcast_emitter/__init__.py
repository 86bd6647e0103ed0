"""roomcast's emitter for Python services: `Emitter(boto3.client("events")).company("acme").to("user:ana").emit(...)`.

Modelled on `@socket.io/redis-emitter`; every event is validated against roomcast's contract before it is sent."""

from roomcast_emitter.contract import DEFAULT_BUS
from roomcast_emitter.emitter import (
    BroadcastOperator,
    CompanyEmitter,
    Emitter,
    EmitterError,
    FrameTooLarge,
    InvalidEvent,
    PublishFailed,
)

__all__ = [
    "DEFAULT_BUS",
    "BroadcastOperator",
    "CompanyEmitter",
    "Emitter",
    "EmitterError",
    "FrameTooLarge",
    "InvalidEvent",
    "PublishFailed",
]
