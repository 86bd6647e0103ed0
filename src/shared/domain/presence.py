"""A connection's life: recorded at $connect, forgotten at $disconnect, on a 410, by the sweep or a kick, and
the `status:online` / `status:offline` announcements that follow, each made once per user. A user whose last
connection closed stays present for the grace (`PRESENCE_GRACE_SECONDS`): a reconnect within it announces
nothing, and its end announces `status:offline` once if none came (decision 0060)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shared.delivery.deferred import AnyTask, Deferrer, GoneRecipient, NativeSessionOpened, SessionOpened, UserOnline
from shared.delivery.delayed import Delayer, OfflineDue
from shared.delivery.hub import Hub
from shared.observability import logger
from shared.protocol.codec import Codec
from shared.protocol.identity import Identity
from shared.protocol.outbound import presence_event
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
    ) -> None:
        self._store = store
        self._access = access
        self._hub = hub
        self._deferrer = deferrer
        self._delayer = delayer
        self._grace_seconds = grace_seconds
        self._departure = departure_after(grace_seconds)

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
        # The user may have gone again before this ran; then the offline announcement has been made.
        if self._store.is_online(task.company_id, task.user_id):
            self._hub.emit(
                task.company_id,
                company_room(task.company_id),
                presence_event(task.user_id, online=True),
                exclude=task.connection_id,
            )

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
        self._hub.emit(company_id, company_room(company_id), presence_event(user_id, online=False))
