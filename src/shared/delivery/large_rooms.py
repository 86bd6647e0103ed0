"""A large room's broadcast, after the request handed it off (decision 0052): one worker reads every member and
splits them into chunks, one asynchronous invocation each; each chunk worker posts to its members a batch at a
time, every batch claimed first from a posts-per-second budget the workers share."""

from __future__ import annotations

from collections.abc import Iterator

from shared.delivery.deferred import BroadcastChunk, Deferrer, Recipient, RoomBroadcast
from shared.delivery.hub import FanoutReport, Hub
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import Clock
from shared.protocol.rooms import Room, parse_room
from shared.stores.budget import PostBudget
from shared.stores.rooms import Member, Recipients, RoomReader


class LargeRooms:
    def __init__(
        self,
        rooms: RoomReader,
        hub: Hub,
        deferrer: Deferrer,
        budget: PostBudget,
        clock: Clock,
        *,
        chunk: int,
        batch: int,
    ) -> None:
        """`chunk`: recipients per chunk worker, one asynchronous invocation each. `batch`: posts a chunk worker
        claims from the budget and sends at once, its own concurrency."""
        self._rooms = rooms
        self._hub = hub
        self._deferrer = deferrer
        self._budget = budget
        self._clock = clock
        self._chunk = chunk
        self._batch = batch

    def split(self, task: RoomBroadcast) -> int:
        """The worker's side of a hand-off: every member of the room, in chunks of one worker each. Returns how
        many chunks were handed on; one that could not be is logged, and its members miss this event."""
        room = _room(task.room)
        members = [
            Recipient(connectionId=member.connection_id, codec=member.codec, since=member.since)
            for page in self._rooms.members(task.company_id, room)
            for member in page
            if member.connection_id != task.exclude
        ]
        size = self._chunk
        handed = 0
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            task_of_chunk = BroadcastChunk(
                companyId=task.company_id,
                room=task.room,
                frame=task.frame,
                recipients=tuple(chunk),
                position=task.position,
            )
            try:
                self._deferrer.defer(task_of_chunk)
                handed += 1
            except Exception:
                # Not retried by failing the whole split: the chunks already handed on would be posted twice.
                logger.exception("could not hand off a chunk", extra={"room": task.room, "members": len(chunk)})
                metrics.add_metric(name="HandOffFailures", unit=MetricUnit.Count, value=1)
        return handed

    def post(self, chunk: BroadcastChunk) -> FanoutReport:
        """Post to one chunk's members, a batch at a time, each batch claimed from the shared budget first."""
        return self._hub.deliver_each(self._batches(chunk, _room(chunk.room)), chunk.frame, chunk.position)

    def _batches(self, chunk: BroadcastChunk, room: Room) -> Iterator[Recipients]:
        remaining = list(chunk.recipients)
        while remaining:
            granted = self._budget.take(min(self._batch, len(remaining)), self._clock.now())
            if granted == 0:
                now = self._clock.now()
                self._clock.sleep(1 - now.microsecond / 1_000_000)  # until the next second's budget
                continue
            batch, remaining = remaining[:granted], remaining[granted:]
            members = [Member(recipient.connection_id, recipient.codec, recipient.since) for recipient in batch]
            yield Recipients.of(chunk.company_id, room, members)


def _room(name: str) -> Room:
    room = parse_room(name)
    if room is None:
        raise ValueError(f"no large-room broadcast to {name!r}")
    return room
