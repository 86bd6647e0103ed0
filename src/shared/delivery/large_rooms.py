"""A large room's broadcast, after the request handed it off (decision 0052): one worker reads every member and
splits them into chunks, one broadcast-queue message each; each chunk worker posts to its members a batch at a
time, every batch claimed first from the company's and the platform's posts-per-second budgets; what a spent
budget leaves goes back to the queue, later (decision 0092)."""

from __future__ import annotations

from collections.abc import Iterator

from shared.delivery.deferred import BroadcastChunk, Deferrer, Recipient, RoomBroadcast
from shared.delivery.hub import FanoutReport, Hub
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import Clock
from shared.protocol.rooms import Room, parse_room
from shared.stores.budget import TenantBudgets
from shared.stores.rooms import Member, Recipients, RoomReader


class LargeRooms:
    def __init__(
        self,
        rooms: RoomReader,
        hub: Hub,
        deferrer: Deferrer,
        budget: TenantBudgets,
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
        """The worker's side of a hand-off: every member of the room from `task.start_at` on, in order of their
        ids, in chunks of one worker each. Returns how many chunks were handed on. Should one fail to be, the
        members from its first on are handed on as a split of their own; should that fail too, or should such a
        split fail at its first chunk, this raises and the split is received again whole: the chunks handed on
        before are posted twice, nobody misses the event."""
        room = _room(task.room)
        members = sorted(
            (
                Recipient(connectionId=member.connection_id, codec=member.codec, since=member.since)
                for page in self._rooms.members(task.company_id, room)
                for member in page
                if member.connection_id != task.exclude
                and (task.start_at is None or member.connection_id >= task.start_at)
            ),
            key=lambda recipient: recipient.connection_id,
        )
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
            except Exception:
                logger.exception("could not hand off a chunk", extra={"room": task.room, "members": len(chunk)})
                metrics.add_metric(name="HandOffFailures", unit=MetricUnit.Count, value=1)
                if handed == 0 and task.start_at is not None:
                    # A split of what a refused chunk left, refused at its first chunk again (a refusal may be the
                    # chunk's own, its size): failed, so the redrive policy ends it (none of it was handed on, none
                    # is posted twice), not sent on unchanged for ever.
                    raise
                # The rest as a split of its own, read again when it runs: those handed on already are not posted
                # twice, and a member who joins meanwhile is, or is not, posted to, as after any split's read.
                self._deferrer.defer(task.model_copy(update={"start_at": chunk[0].connection_id}))
                return handed
            handed += 1
        return handed

    def post(self, chunk: BroadcastChunk) -> FanoutReport:
        """Post to one chunk's members, a batch at a time, each batch claimed from the company's and the platform's
        budgets first; once either is spent, the members left go back to the queue as a chunk of their own."""
        remaining = list(chunk.recipients)
        report = self._hub.deliver_each(self._batches(chunk, _room(chunk.room), remaining), chunk.frame, chunk.position)
        if remaining:
            # A budget is spent: the rest waits in the queue, not in this execution (decision 0092). Should this
            # fail, the chunk fails and comes back whole: some members hear the event twice, none misses it.
            self._deferrer.defer(
                chunk.model_copy(update={"recipients": tuple(remaining), "requeues": chunk.requeues + 1})
            )
            report.requeued = len(remaining)
        return report

    def _batches(self, chunk: BroadcastChunk, room: Room, remaining: list[Recipient]) -> Iterator[Recipients]:
        """Batches as the budgets grant them; what no budget granted is left in `remaining`."""
        while remaining:
            granted = self._budget.take(chunk.company_id, min(self._batch, len(remaining)), self._clock.now())
            if granted == 0:
                return
            batch = remaining[:granted]
            del remaining[:granted]
            members = [Member(recipient.connection_id, recipient.codec, recipient.since) for recipient in batch]
            yield Recipients.of(chunk.company_id, room, members)


def _room(name: str) -> Room:
    room = parse_room(name)
    if room is None:
        raise ValueError(f"no large-room broadcast to {name!r}")
    return room
