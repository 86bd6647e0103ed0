"""The local stack: API Gateway's WebSocket API, @connections and EventBridge PutEvents on one port,
invoking the handlers that template.yaml names, with DynamoDB embedded (moto) or at DYNAMODB_ENDPOINT."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import boto3
from aiohttp import WSCloseCode, WSMsgType, web

from roomcast_local.environment import DEVELOPMENT_SECRET, local_environment
from roomcast_local.eventbridge import (
    EntryError,
    Schedule,
    check_entry,
    matches,
    rules,
    scheduled_event,
    schedules,
    to_event,
)
from roomcast_local.events import Peer, authorizer_event, connect_event, disconnect_event, message_event
from roomcast_local.invoke import LocalContext, load_handler
from roomcast_local.template import create_tables, load_template, table_definitions, websocket_api

log = logging.getLogger("stack")  # not "roomcast...": Powertools filters its own service name from root handlers

MAX_FRAME_BYTES = 32 * 1024
MAX_POST_BYTES = 128 * 1024
GOING_AWAY = 1001


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 3001
    stage: str = "local"
    idle_timeout: float = 600.0
    hard_timeout: float = 7200.0
    dynamodb_endpoint: str | None = None
    schedule_every: float | None = None
    secret: str = DEVELOPMENT_SECRET
    verbose: bool = False


class State(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class Connection:
    peer: Peer
    state: State = State.CONNECTING
    socket: web.WebSocketResponse | None = None
    last_active: float = field(default_factory=time.time)
    close_reason: str | None = None


def _new_connection_id() -> str:
    """Shaped like API Gateway's: 16 URL-safe characters."""
    return secrets.token_urlsafe(12)


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _aws_error(status: int, code: str, message: str, content_type: str = "application/json") -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}),
        headers={"x-amzn-ErrorType": code, "Content-Type": content_type},
    )


class LocalStack:
    def __init__(self, config: StackConfig, template: dict[str, Any] | None = None) -> None:
        self.config = config
        self.template = template or load_template()
        self.api = websocket_api(self.template)
        self.rules = rules(self.template)
        self.schedules = schedules(self.template)
        self.connections: dict[str, Connection] = {}
        # One worker, like one warm Lambda container: handlers and Powertools assume one event at a time.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda")
        self._moto: Any = None
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.Future[None]] = []
        self.url = ""

    # ---- start and stop ----

    async def start(self) -> None:
        listener = socket.create_server((self.config.host, self.config.port))
        host, port = listener.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        dynamodb = self.config.dynamodb_endpoint or self._start_moto()
        os.environ.update(local_environment(self.template, self.url, dynamodb, self.config.secret, self.config.verbose))
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        self._ensure_tables(dynamodb)
        for handler in {*self.api.handlers.values()}:
            load_handler(handler)
        app = self.build_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, listener).start()
        self._timers = [asyncio.ensure_future(self._run_schedule(schedule)) for schedule in self.schedules]

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_POST_BYTES * 2)
        app.router.add_get("/", self._websocket)
        app.router.add_get("/{stage}", self._websocket)
        for prefix in ("", "/{stage}"):
            app.router.add_post(prefix + "/@connections/{connection_id}", self._post_to_connection)
            app.router.add_get(prefix + "/@connections/{connection_id}", self._get_connection)
            app.router.add_delete(prefix + "/@connections/{connection_id}", self._delete_connection)
        app.router.add_post("/", self._aws_json)
        return app

    def _start_moto(self) -> str:
        from moto.server import ThreadedMotoServer

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _ensure_tables(self, endpoint: str) -> None:
        client = boto3.client("dynamodb", endpoint_url=endpoint)
        existing = set(client.list_tables()["TableNames"])
        names = {
            table.logical_id: os.environ.get(_table_variable(table.logical_id), table.logical_id)
            for table in table_definitions(self.template)
        }
        create_tables(client, self.template, {logical: name for logical, name in names.items() if name not in existing})

    async def stop(self) -> None:
        """Close every connection as API Gateway does on shutdown; their $disconnect events run."""
        for timer in self._timers:
            timer.cancel()
        for connection in list(self.connections.values()):
            if connection.socket is not None and connection.state is State.OPEN:
                connection.close_reason = "Going away"
                await connection.socket.close(code=GOING_AWAY, message=b"Going away")
        while self.connections or self._background:
            await asyncio.sleep(0.02)
        if self._runner is not None:
            await self._runner.cleanup()
        self._worker.shutdown(wait=True)
        if self._moto is not None:
            self._moto.stop()

    # ---- invoking handlers ----

    async def invoke(self, function: str, event: dict[str, Any], label: str, connection_id: str) -> Any:
        handler = load_handler(self.api.handlers[function])
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._worker, handler, event, LocalContext(function)
            )
            outcome = str(result.get("statusCode", "ok")) if isinstance(result, dict) else "ok"
            return result
        except Exception as error:
            outcome = f"raised {type(error).__name__}: {error}"
            raise
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            log.info("%-22s %-16s %-18s %s %.1f ms", label, connection_id, function, outcome, elapsed)

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_schedule(self, schedule: Schedule) -> None:
        every = self.config.schedule_every or schedule.every_seconds
        while True:
            await asyncio.sleep(every)
            try:
                await self.invoke(schedule.function, scheduled_event(schedule), "schedule", schedule.name)
            except Exception:
                log.exception("scheduled %s failed", schedule.name)

    # ---- the WebSocket API ----

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=426, text="roomcast local stack: connect with a WebSocket client\n")
        peer = Peer(
            connection_id=_new_connection_id(),
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent"),
            domain_name=request.host,
            stage=request.match_info.get("stage", self.config.stage),
        )
        refused = await self._authorize(peer, request)
        if refused is not None:
            return refused
        connection = Connection(peer)
        self.connections[peer.connection_id] = connection
        connect = self.api.routes.get("$connect")
        try:
            if connect is not None:
                result = await self.invoke(
                    connect.function,
                    connect_event(peer, request.headers, request.query),
                    "$connect",
                    peer.connection_id,
                )
                status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
                if not 200 <= status < 300:
                    del self.connections[peer.connection_id]
                    return web.Response(status=status)
        except Exception:
            del self.connections[peer.connection_id]
            return web.Response(status=500, text="Internal server error")
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True)
        await ws.prepare(request)
        connection.socket = ws
        connection.state = State.OPEN
        await self._serve(connection, ws)
        return ws

    async def _authorize(self, peer: Peer, request: web.Request) -> web.Response | None:
        """Run the REQUEST authorizer: an `Unauthorized` error is 401, a Deny 403."""
        if self.api.authorizer_function is None:
            return None
        event = authorizer_event(peer, request.headers, request.query)
        try:
            policy = await self.invoke(self.api.authorizer_function, event, "authorizer", peer.connection_id)
        except Exception as error:
            if str(error) == "Unauthorized":
                return web.Response(status=401, text="Unauthorized")
            return web.Response(status=500, text="Internal server error")
        statements = policy.get("policyDocument", {}).get("Statement", [])
        if not statements or any(statement.get("Effect") != "Allow" for statement in statements):
            return web.Response(status=403, text="Forbidden")
        peer.authorizer = {**policy.get("context", {}), "principalId": policy.get("principalId")}
        return None

    async def _serve(self, connection: Connection, ws: web.WebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        hard_limit = loop.call_later(
            self.config.hard_timeout, lambda: self._in_background(self._close(connection, GOING_AWAY, "Going away"))
        )
        try:
            while True:
                try:
                    message = await ws.receive(timeout=self.config.idle_timeout)
                except TimeoutError:
                    await self._close(connection, GOING_AWAY, "Going away")
                    break
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    connection.last_active = time.time()
                    text = message.data if message.type is WSMsgType.TEXT else message.data.decode("utf-8", "replace")
                    await self._on_frame(connection, ws, text)
                else:
                    if message.type is WSMsgType.ERROR:
                        connection.close_reason = "Message too big"
                    break
        finally:
            hard_limit.cancel()
            connection.state = State.CLOSED
            code = ws.close_code or int(WSCloseCode.ABNORMAL_CLOSURE)
            reason = connection.close_reason or ("Client-side close frame status not set" if code == 1005 else "")
            await self._disconnect(connection, code, reason)

    async def _on_frame(self, connection: Connection, ws: web.WebSocketResponse, body: str) -> None:
        route_key = self.api.select(body)
        route = self.api.routes.get(route_key)
        if route is None:
            await ws.send_str(json.dumps({"message": "Forbidden", "connectionId": connection.peer.connection_id}))
            return
        event = message_event(connection.peer, route_key, body)
        try:
            result = await self.invoke(route.function, event, route_key, connection.peer.connection_id)
        except Exception:
            if not ws.closed:
                await ws.send_str(
                    json.dumps(
                        {
                            "message": "Internal server error",
                            "connectionId": connection.peer.connection_id,
                            "requestId": event["requestContext"]["requestId"],
                        }
                    )
                )
            return
        reply = result.get("body") if isinstance(result, dict) else None
        if route.two_way and reply and not ws.closed:
            await ws.send_str(reply)

    async def _disconnect(self, connection: Connection, code: int, reason: str) -> None:
        try:
            route = self.api.routes.get("$disconnect")
            if route is not None:
                await self.invoke(
                    route.function,
                    disconnect_event(connection.peer, code, reason),
                    "$disconnect",
                    connection.peer.connection_id,
                )
        except Exception:
            log.exception("$disconnect failed")
        finally:
            self.connections.pop(connection.peer.connection_id, None)

    async def _close(self, connection: Connection, code: int, reason: str) -> None:
        if connection.socket is not None and connection.state is State.OPEN:
            connection.close_reason = reason
            await connection.socket.close(code=code, message=reason.encode())

    # ---- @connections ----

    def _open(self, request: web.Request) -> Connection | None:
        connection = self.connections.get(request.match_info["connection_id"])
        return connection if connection is not None and connection.state is State.OPEN else None

    async def _post_to_connection(self, request: web.Request) -> web.Response:
        connection = self._open(request)
        if connection is None or connection.socket is None:
            return _aws_error(410, "GoneException", "Gone")
        data = await request.read()
        if len(data) > MAX_POST_BYTES:
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        try:
            try:
                await connection.socket.send_str(data.decode("utf-8"))
            except UnicodeDecodeError:
                await connection.socket.send_bytes(data)
        except ConnectionError:
            return _aws_error(410, "GoneException", "Gone")
        return web.Response(status=200)

    async def _get_connection(self, request: web.Request) -> web.Response:
        connection = self._open(request)
        if connection is None:
            return _aws_error(410, "GoneException", "Gone")
        peer = connection.peer
        identity = {"sourceIp": peer.source_ip, **({"userAgent": peer.user_agent} if peer.user_agent else {})}
        return web.json_response(
            {
                "connectedAt": _iso(peer.connected_at / 1000),
                "lastActiveAt": _iso(connection.last_active),
                "identity": identity,
            }
        )

    async def _delete_connection(self, request: web.Request) -> web.Response:
        connection = self._open(request)
        if connection is None:
            return _aws_error(410, "GoneException", "Gone")
        # Answer first: the $disconnect this causes may itself be waiting on the caller's invocation.
        self._in_background(self._close(connection, 1000, "Connection closed by the server"))
        return web.Response(status=204)

    # ---- EventBridge ----

    async def _aws_json(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        json_type = "application/x-amz-json-1.1"
        if target != "AWSEvents.PutEvents":
            return _aws_error(
                400, "UnknownOperationException", f"{target or 'no target'} is not served here", json_type
            )
        try:
            payload = json.loads(await request.read())
            entries = payload["Entries"]
            if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
                raise ValueError("Entries must hold 1 to 10 entries")
        except (ValueError, KeyError, TypeError) as error:
            return _aws_error(400, "ValidationException", str(error), json_type)
        results: list[dict[str, str]] = []
        for entry in entries:
            try:
                detail = check_entry(entry)
            except EntryError as error:
                results.append({"ErrorCode": error.code, "ErrorMessage": error.message})
                continue
            event = to_event(entry, detail)
            results.append({"EventId": event["id"]})
            bus = entry.get("EventBusName") or "default"
            for rule in self.rules:
                if rule.bus == bus.rsplit("/", 1)[-1] and matches(rule.pattern, event):
                    self._in_background(self._deliver_event(rule.function, rule.name, event))
        failed = sum(1 for result in results if "ErrorCode" in result)
        return web.Response(
            body=json.dumps({"FailedEntryCount": failed, "Entries": results}),
            content_type=json_type,
        )

    async def _deliver_event(self, function: str, rule: str, event: dict[str, Any]) -> None:
        try:
            await self.invoke(function, event, event["detail-type"], rule)
        except Exception:
            log.exception("target of %s failed", rule)


def _table_variable(logical_id: str) -> str:
    """ConnectionsTable -> CONNECTIONS_TABLE: the variable the template passes its name in."""
    name = "".join(f"_{char}" if char.isupper() and index else char for index, char in enumerate(logical_id))
    return name.upper()
