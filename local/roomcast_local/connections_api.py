"""API Gateway's Management API (`@connections`) for the local stack: POST, GET and DELETE on
`/{stage}/@connections/{connectionId}`, as the real boto3 `apigatewaymanagementapi` client sends them.

AWS requires a SigV4 signature and the stage's path, and the caller's IAM policy must allow
`execute-api:ManageConnections` on `arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/@connections/{id}`
(https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html,
https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-control-access-iam.html)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from roomcast_local.callers import Callers
from roomcast_local.environment import ACCOUNT, API_ID, REGION
from roomcast_local.errors import aws_error
from roomcast_local.frames import MAX_MESSAGE_BYTES
from roomcast_local.websocket import CLOSED_BY_SERVER, Connection, WebSocketEndpoint
from shared.protocol.clock import iso

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _gone() -> web.Response:
    return aws_error(410, "GoneException", "Gone")


class ConnectionsApi:
    def __init__(
        self,
        endpoint: WebSocketEndpoint,
        callers: Callers,
        stage: str,
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.endpoint = endpoint
        self.callers = callers
        self.stage = stage
        self.spawn = spawn

    def routes(self, app: web.Application) -> None:
        path = "/{stage}/@connections/{connection_id}"
        app.router.add_post(path, self._guarded(self._post))
        app.router.add_get(path, self._guarded(self._get))
        app.router.add_delete(path, self._guarded(self._delete))

    def _guarded(self, answer: Callable[[web.Request, Connection], Awaitable[web.Response]]) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            if request.match_info["stage"] != self.stage:
                return aws_error(403, "ForbiddenException", "Forbidden")
            connection_id = request.match_info["connection_id"]
            api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{self.stage}"
            resource = f"{api}/{request.method}/@connections/{connection_id}"
            _, refusal = await self.callers.check(request, "execute-api", "execute-api:ManageConnections", resource)
            if refusal is not None:
                return refusal
            connection = self.endpoint.open(connection_id)
            if connection is None:
                return _gone()
            return await answer(request, connection)

        return guarded

    async def _post(self, request: web.Request, connection: Connection) -> web.Response:
        data = await request.read()
        if len(data) > MAX_MESSAGE_BYTES:
            return aws_error(413, "PayloadTooLargeException", "Request entity too large")
        try:
            await connection.send(data)
        except ConnectionError:
            return _gone()
        return web.Response(status=200)

    async def _get(self, _request: web.Request, connection: Connection) -> web.Response:
        peer = connection.peer
        identity = {"sourceIp": peer.source_ip, **({"userAgent": peer.user_agent} if peer.user_agent else {})}
        return web.json_response(
            {
                "connectedAt": iso(datetime.fromtimestamp(peer.connected_at / 1000, UTC)),
                "lastActiveAt": iso(datetime.fromtimestamp(connection.last_active_at, UTC)),
                "identity": identity,
            }
        )

    async def _delete(self, _request: web.Request, connection: Connection) -> web.Response:
        # Answer first: the $disconnect this causes may itself be waiting on the caller's invocation.
        self.spawn(connection.close(1000, CLOSED_BY_SERVER))
        return web.Response(status=204)
