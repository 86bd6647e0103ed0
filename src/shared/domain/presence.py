"""A connection's life: recorded at $connect, forgotten at $disconnect, on a 410 or by the sweep, and the
`status:online` / `status:offline` announcements that follow, each made once per user."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shared.delivery.deferred import AnyTask, Deferrer, GoneRecipient, NativeSessionOpened, SessionOpened, UserOnline
from shared.delivery.hub import Hub
from shared.protocol.codec import Codec
from shared.protocol.identity import Identity
from shared.protocol.namespaces import presence_event
from shared.protocol.rooms import company_room
from shared.stores.connections import Closed, ConnectionStore, Opened


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


class Presence:
    def __init__(self, store: ConnectionStore, hub: Hub, deferrer: Deferrer) -> None:
        self._store = store
        self._hub = hub
        self._deferrer = deferrer

    def connect(
        self, connection_id: str, identity: Identity, now: datetime, native_session: NativeSessionOpened | None = None
    ) -> None:
        """Record the connection (raises ConnectionRefused if it closed meanwhile). A user's first
        connection is announced after $connect returns: the company may be large. A Socket.IO connection's
        open packet, and a native session's replay, can only be posted after $connect returns, so they are
        handed off too."""
        first = self._store.open(connection_id, identity, now)
        try:
            for task in connect_tasks(connection_id, identity, first, native_session):
                self._deferrer.defer(task)
        except Exception:
            self._store.close(connection_id, now)  # the handshake fails: nothing of it stays recorded
            raise

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
        closed = self._store.close(connection_id, now)
        self._announce_offline([closed])
        return closed

    def forget_gone(self, recipients: Iterable[GoneRecipient], now: datetime) -> int:
        """Forget connections `@connections` answered 410 for, but not one whose $connect may still have been
        running when the 410 came. Returns how many were forgotten."""
        closed = [
            self._store.close(gone.connection_id, now, found_in=gone.room_key, settled_before=gone.found_at)
            for gone in recipients
        ]
        self._announce_offline(closed)
        return sum(1 for entry in closed if entry is not None)

    def sweep(self, now: datetime) -> int:
        """Forget connections whose $disconnect never came; returns how many."""
        stale: list[Opened] = self._store.stale(now)
        self._announce_offline([self._store.close(opened.connection_id, now, remembered=opened) for opened in stale])
        return len(stale)

    def _announce_offline(self, closed: Iterable[Closed | None]) -> None:
        # Only the close that removed a user's last connection sees `went_offline`: one announcement a user.
        for entry in closed:
            if entry is not None and entry.went_offline:
                identity = entry.connection.identity
                self._hub.emit(
                    identity.company_id,
                    company_room(identity.company_id),
                    presence_event(identity.user_id, online=False),
                )
