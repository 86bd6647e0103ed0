"""Ending a user's access now (the `Disconnect` and `RevokeTokens` backend events, decisions 0061 and 0062):
the access marker first, then every connection of the user in the company told why and closed, and the user
announced offline at once, without the grace."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shared.delivery.hub import Hub
from shared.delivery.management_api import Delivery
from shared.domain.presence import Presence
from shared.observability import logger
from shared.protocol.codec import Codec
from shared.protocol.frames import encode
from shared.protocol.identity import Identity
from shared.protocol.outbound import Disconnected, server_event
from shared.stores.access import AccessStore
from shared.stores.connections import Connection, ConnectionStore

KICKED = "kicked"
REVOKED = "revoked"


def farewell(codec: Codec, namespaces: Iterable[str], reason: str) -> list[str]:
    """What a connection is sent before the server closes it: a native one the `disconnect` event with the
    reason; a Socket.IO one a DISCONNECT packet per namespace it opened, after which socket.io-client reports
    `io server disconnect` and does not reconnect by itself."""
    if codec is Codec.SOCKETIO:
        from shared.protocol import socketio  # the codec only where a Socket.IO connection is kicked

        return [socketio.disconnect(namespace) for namespace in sorted(namespaces)]
    return [encode(server_event("disconnect", Disconnected(reason=reason)))]


class Kicks:
    def __init__(self, store: AccessStore, connections: ConnectionStore, hub: Hub, presence: Presence) -> None:
        self._store = store
        self._connections = connections
        self._hub = hub
        self._presence = presence

    def end_access(
        self, company_id: str, user_id: str, reason: str, now: datetime, issued_before: datetime | None = None
    ) -> int:
        """End every connection of the user in the company; with `issued_before`, revoke older tokens too.
        Returns how many connections were ended.

        The marker is written before the connections are listed: a connection whose $connect was running
        meanwhile is either listed here or reads the marker once recorded and refuses itself (Presence.connect)."""
        if issued_before is not None:
            self._store.revoke(company_id, user_id, issued_before)
        self._store.end_sessions(company_id, user_id, now)
        ended, closing = self._connections.of_user(company_id, user_id)
        for connection in ended:
            self._end(connection, reason, now)
        # Listed without an open record: a close half-way (its own would begin a grace) or a record expired.
        for connection_id in closing:
            self._presence.end_now(connection_id, now, Identity(userId=user_id, companyId=company_id))
        # Within the grace after a last connection, the user is still present: absent now, announced once.
        self._presence.cut_grace(company_id, user_id)
        logger.info("access ended", extra={"ended": len(ended), "revoked": issued_before is not None})
        return len(ended)

    def _end(self, connection: Connection, reason: str, now: datetime) -> None:
        for text in farewell(connection.identity.codec, connection.namespaces, reason):
            # A 410 here is handed off as any is (the clean-up finds it closed); it is closed below all the same.
            # The packets after it would meet the same 410, each handed off again: not posted.
            if self._hub.send(connection.connection_id, text) is Delivery.GONE:
                break
        self._hub.close(connection.connection_id)
        self._presence.end_now(connection.connection_id, now)
