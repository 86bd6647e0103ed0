"""A connection's life: recorded at $connect, forgotten at $disconnect, on a 410, by the sweep or a kick, and
the `status:online` / `status:offline` announcements that follow, each made once per user. A user whose last
connection closed stays present for the grace (`PRESENCE_GRACE_SECONDS`): a reconnect within it announces
nothing, and its end announces `status:offline` once if none came (decision 0060). In a company with more users
online than PRESENCE_DIGEST_THRESHOLD, the changes are coalesced into `presence:changed` digests instead, at most
as often as keeps the company's presence posts within PRESENCE_POSTS_PER_SECOND (decision 0089)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shared.delivery.deferred import AnyTask, Deferrer, GoneRecipient, NativeSessionOpened, SessionOpened, UserOnline
from shared.delivery.delayed import MAX_DELAY_SECONDS, Delayer, DigestDue, OfflineDue
from shared.delivery.hub import Hub
from shared.observability import logger
from shared.protocol.clock import Clock
from shared.protocol.codec import Codec
from shared.protocol.frames import Frame, encode
from shared.protocol.identity import Identity
from shared.protocol.outbound import PresenceChanged, presence_event, server_event
from shared.protocol.rooms import company_room
from shared.stores.access import AccessStore
from shared.stores.connections import (
    Closed,
    ConnectionFailed,
    ConnectionRefused,
    ConnectionStore,
    Departure,
    Opened,
)
from shared.stores.presence_digest import RECORD_ATTEMPTS, PendingChange, PresenceDigestStore


def connect_tasks(
    connection_id: str, identity: Identity, first: bool, native_session: NativeSessionOpened | None = None
) -> list[AnyTask]:
    """What a $connect hands off: a Socket.IO connection's open packet, a native session's (re)connection,
    and a user's first connection's `status:online` (only the connection that made the user online
    announces it)."""
    tasks: list[AnyTask] = []
    if identity.codec is Codec.SOCKETIO:
        tasks.append(SessionOpened(connectionId=connection_id))
    elif identity.recovery and native_session is not None:
        tasks.append(native_session)
    if first:
        tasks.append(UserOnline(companyId=identity.company_id, userId=identity.user_id, connectionId=connection_id))
    return tasks


def ended_since(seen: datetime | None, now: datetime | None) -> bool:
    """Whether the user's sessions were ended (a kick, a revocation) after the handshake that saw `seen`:
    `now` is the access item's `sessionsEndedAt` as read once the connection is recorded."""
    return now is not None and (seen is None or now > seen)


def departure_after(grace_seconds: int) -> Departure:
    """How an ordinary close (a $disconnect, a 410, the sweep) leaves the user's presence."""
    return Departure.GRACE if grace_seconds > 0 else Departure.NOW


# Bytes a digest's frame leaves for a session's offset and Socket.IO's framing.
FRAMING_MARGIN = 64


def coalesces(online: int | None, threshold: int, digest_scheduled: bool) -> bool:
    """Whether a presence change joins a digest rather than being announced on its own: a digest is due already
    (an announcement of its own could overtake a change of the same user that digest holds; `online` is then not
    read, None), or the company has more users online than the threshold."""
    return digest_scheduled or (online is not None and online > threshold)


def digest_interval(online: int, posts_per_second: int) -> int:
    """Seconds from a digest's first change to its announcement: a digest costs one post per member of the
    company room (about one per user online), so one every `interval` keeps the company within the rate."""
    return min(MAX_DELAY_SECONDS, max(1, math.ceil(online / max(1, posts_per_second))))


def net_changes(changes: Iterable[PendingChange]) -> tuple[list[str], list[str]]:
    """Who came online and who went offline over a digest's interval: a user who came and went (or went and
    came) within it changed nothing colleagues can see."""
    online = sorted(change.user_id for change in changes if change.online and not change.was_online)
    offline = sorted(change.user_id for change in changes if not change.online and change.was_online)
    return online, offline


def digest_frames(online: list[str], offline: list[str], max_bytes: int) -> list[Frame]:
    """The `presence:changed` events announcing a digest, as few as fit within `max_bytes` each, with room for
    what a session's copy adds (its offset) and Socket.IO's framing (decision 0035)."""
    room = max_bytes - len(encode(_digest_frame([], []))) - FRAMING_MARGIN
    frames: list[Frame] = []
    batch: tuple[list[str], list[str]] = ([], [])
    used = 0
    for user_id, goes_online in [(user, True) for user in online] + [(user, False) for user in offline]:
        size = len(json.dumps(user_id).encode("utf-8")) + 1  # the id and its comma
        if used + size > room and (batch[0] or batch[1]):
            frames.append(_digest_frame(*batch))
            batch, used = ([], []), 0
        batch[0 if goes_online else 1].append(user_id)
        used += size
    if batch[0] or batch[1]:
        frames.append(_digest_frame(*batch))
    return frames


def _digest_frame(online: list[str], offline: list[str]) -> Frame:
    return server_event("presence:changed", PresenceChanged(online=online, offline=offline))


@dataclass(frozen=True)
class Digests:
    """How a large company's presence is coalesced (decision 0089)."""

    store: PresenceDigestStore
    threshold: int
    """Users online past which a company's changes go into digests (PRESENCE_DIGEST_THRESHOLD)."""
    posts_per_second: int
    """What a company's digests may post a second (PRESENCE_POSTS_PER_SECOND)."""
    max_frame_bytes: int
    clock: Clock


class Presence:
    def __init__(
        self,
        store: ConnectionStore,
        access: AccessStore,
        hub: Hub,
        deferrer: Deferrer,
        delayer: Delayer,
        *,
        grace_seconds: int,
        digests: Digests,
    ) -> None:
        self._store = store
        self._access = access
        self._hub = hub
        self._deferrer = deferrer
        self._delayer = delayer
        self._grace_seconds = grace_seconds
        self._departure = departure_after(grace_seconds)
        self._digests = digests

    def connect(
        self, connection_id: str, identity: Identity, now: datetime, native_session: NativeSessionOpened | None = None
    ) -> None:
        """Record the connection (raises ConnectionRefused if it closed meanwhile, or if its user was kicked
        after its handshake). A user's first connection is announced after $connect returns: the company may
        be large. A Socket.IO connection's open packet, and a native session's replay, can only be posted
        after $connect returns, so they are handed off too."""
        try:
            first = self._store.open(connection_id, identity, now, self._departure)
        except (ConnectionRefused, ConnectionFailed) as refused:
            # A grace this connection interrupted still ends in its announcement.
            self._settle([refused.closed])
            raise
        # A kick lists the user's connections after it writes its marker: one recorded after that listing
        # reads the marker here, so no connection authorized before a kick outlives it (decision 0062).
        marker = self._access.read(identity.company_id, identity.user_id).sessions_ended_at
        if ended_since(identity.sessions_ended_at, marker):
            self._undo(connection_id, now, Departure.UNDO if first else Departure.NOW)
            raise ConnectionRefused(connection_id)
        try:
            for task in connect_tasks(connection_id, identity, first, native_session):
                self._deferrer.defer(task)
        except Exception:
            # The handshake fails: nothing of it stays recorded.
            self._undo(connection_id, now, Departure.UNDO if first else self._departure)
            raise

    def _undo(self, connection_id: str, now: datetime, departure: Departure) -> None:
        self._settle([self._store.close(connection_id, now, departure=departure)])

    def announce_online(self, task: UserOnline) -> None:
        # The user may have gone again before this ran; then the offline announcement has been made, and counted.
        if self._store.is_online(task.company_id, task.user_id):
            self._changed(task.company_id, task.user_id, online=True, exclude=task.connection_id)
        else:
            self._digests.store.add(task.company_id, +1)

    def disconnect(self, connection_id: str, now: datetime) -> Closed | None:
        """Forget the connection; returns what was closed (None: nothing was recorded)."""
        closed = self._store.close(connection_id, now, departure=self._departure)
        self._settle([closed])
        return closed

    def forget_gone(self, recipients: Iterable[GoneRecipient], now: datetime) -> int:
        """Forget connections `@connections` answered 410 for, but not one whose $connect may still have been
        running when the 410 came. Returns how many were forgotten."""
        closed = [
            self._store.close(
                gone.connection_id, now, found_in=gone.room_key, settled_before=gone.found_at, departure=self._departure
            )
            for gone in recipients
        ]
        self._settle(closed)
        return sum(1 for entry in closed if entry is not None)

    def sweep(self, now: datetime) -> int:
        """Forget connections whose $disconnect never came; returns how many."""
        stale: list[Opened] = self._store.stale(now)
        self._settle(
            [
                self._store.close(opened.connection_id, now, remembered=opened, departure=self._departure)
                for opened in stale
            ]
        )
        return len(stale)

    def end_grace(self, task: OfflineDue, delivery: str = "") -> bool:
        """A grace is over: announce the user offline if it is still theirs and they did not come back.
        `delivery`: the message that carried the task, so that its redelivery makes an announcement that failed."""
        if not self._store.end_grace(task.company_id, task.user_id, task.grace, delivery):
            return False
        self._announce_offline(task.company_id, task.user_id)
        self._store.grace_announced(task.company_id, task.user_id, task.grace, delivery)
        return True

    def end_now(self, connection_id: str, now: datetime, identity: Identity | None = None) -> None:
        """Forget a connection the server ended (a kick): a user left without one is announced at once.
        `identity`: whose presence lists it, should its record be gone."""
        remembered = None if identity is None else Opened(connection_id, identity, bucket="")
        self._settle([self._store.close(connection_id, now, remembered=remembered, departure=Departure.NOW)])

    def cut_grace(self, company_id: str, user_id: str) -> None:
        """A user within their grace is announced offline now (a kick), and the grace's end finds nothing."""
        if self._store.cut_grace(company_id, user_id):
            self._announce_offline(company_id, user_id)

    def _settle(self, closed: Iterable[Closed | None]) -> None:
        # Only the close that removed a user's last connection sees `went_offline`: one announcement a user,
        # now or at the end of the grace it began.
        for entry in closed:
            if entry is None or not entry.went_offline:
                continue
            identity = entry.connection.identity
            if entry.offline_pending is None:
                self._announce_offline(identity.company_id, identity.user_id)
            else:
                due = OfflineDue(companyId=identity.company_id, userId=identity.user_id, grace=entry.offline_pending)
                try:
                    self._delayer.delay(due, self._grace_seconds)
                except Exception:
                    # Nothing would end a grace whose end is not queued ($disconnect is never retried, the sweep
                    # does not come back): end it now, unless a reconnect came; then settle the others.
                    logger.exception("grace not queued, ended at once", extra={"user_id": identity.user_id})
                    self.end_grace(due)

    def _announce_offline(self, company_id: str, user_id: str) -> None:
        self._changed(company_id, user_id, online=False)

    def _changed(self, company_id: str, user_id: str, *, online: bool, exclude: str | None = None) -> None:
        """Announce a user's change now, or, in a large company, put it in the digest due."""
        count = self._digests.store.count(company_id, +1 if online else -1)
        # A change whose every digest was flushed before it joined is announced on its own rather than lost.
        if coalesces(count.online, self._digests.threshold, count.flush is not None) and self._join_digest(
            company_id, user_id, online, count.online, count.flush
        ):
            return
        self._hub.emit(company_id, company_room(company_id), presence_event(user_id, online), exclude=exclude)

    def _join_digest(self, company_id: str, user_id: str, online: bool, users: int | None, due: str | None) -> bool:
        """Record the change in the digest scheduled, scheduling one if none is (one flush a digest, whatever
        races to make it). False: every digest it tried was flushed before it joined."""
        store = self._digests.store
        token, made = (due, False) if due is not None else store.schedule(company_id)
        for _ in range(RECORD_ATTEMPTS):
            queued = True
            if made:
                task = DigestDue(companyId=company_id, digest=token)
                if users is None:  # the count was not read: a digest was due when this change came
                    users = store.online(company_id)
                try:
                    self._delayer.delay(task, digest_interval(users, self._digests.posts_per_second))
                except Exception:
                    # Nothing would flush a digest whose flush is not queued: flush it once this change is in.
                    logger.exception("digest not queued, flushed at once", extra={"company_id": company_id})
                    queued = False
            if store.record(company_id, token, user_id, online, self._digests.clock.now()):
                if not queued:
                    self.flush_digest(DigestDue(companyId=company_id, digest=token))
                return True
            token, made = store.schedule(company_id)
        return False

    def flush_digest(self, task: DigestDue, delivery: str = "") -> int:
        """A digest is due: close it (later changes go to the next), then announce what it holds once.
        `delivery`: the message that carried the task; its redelivery announces a digest whose announcement
        failed, another copy running beside it says nothing. Returns how many users it announced."""
        store = self._digests.store
        store.close(task.company_id, task.digest, self._digests.clock.now())
        if not store.claim(task.company_id, task.digest, delivery, self._digests.clock.now()):
            return 0
        online, offline = net_changes(store.changes(task.company_id, task.digest))
        for frame in digest_frames(online, offline, self._digests.max_frame_bytes):
            self._hub.emit(task.company_id, company_room(task.company_id), frame)
        store.announced(task.company_id, task.digest)
        return len(online) + len(offline)
