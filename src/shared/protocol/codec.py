"""Which encoding a connection speaks, and a server event encoded once per encoding a room needs.

Apart from the Socket.IO codec (`shared.protocol.socketio`) so that every function can name a codec at
import without loading that codec: it is loaded the first time a Socket.IO member is encoded for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final

from shared.protocol.frames import Frame, encode

ENGINE_IO_VERSION: Final = "4"


class Codec(StrEnum):
    NATIVE = "native"
    SOCKETIO = "socketio"


def codec_of(query: Mapping[str, str] | None) -> Codec:
    """docs/socketio.md: a connection whose query carries `EIO=4` speaks Socket.IO; any other the native frames."""
    return Codec.SOCKETIO if query is not None and query.get("EIO") == ENGINE_IO_VERSION else Codec.NATIVE


def encode_event(frame: Frame, codec: Codec, offset: str | None = None) -> bytes:
    """With `offset`, for a session (decision 0065): the native frame's top-level `offset`, or Socket.IO's
    last argument; without one, exactly the frame as every other connection gets it."""
    if codec is Codec.NATIVE:
        return encode(frame if offset is None else {**frame, "offset": offset}).encode("utf-8")
    from shared.protocol.socketio import event_packet

    return event_packet(frame, offset).encode("utf-8")


def encodings(frame: Frame, codecs: Iterable[Codec]) -> dict[Codec, bytes]:
    """A server event encoded once for each codec among a room's members, whatever their number."""
    return {codec: encode_event(frame, codec) for codec in set(codecs)}
