"""The local stack: API Gateway's WebSocket API and @connections, Lambda's Invoke API, EventBridge PutEvents and
SQS (the template's queues and their event sources) on one port, running the functions template.yaml names in
worker processes of their own, with DynamoDB in a process of its own (moto) or at DYNAMODB_ENDPOINT. Each part
lives in its own module."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import boto3
from aiohttp import web

from roomcast_local.callers import Callers
from roomcast_local.connections_api import ConnectionsApi
from roomcast_local.console import Console
from roomcast_local.environment import (
    DEVELOPMENT_SECRET,
    REGION,
    Endpoints,
    deployed_names,
    function_arns,
    worker_environment,
)
from roomcast_local.eventbridge import EventBridgeApi, rules
from roomcast_local.frames import MAX_MESSAGE_BYTES
from roomcast_local.lambda_api import LambdaApi
from roomcast_local.schedules import Scheduler, schedules
from roomcast_local.sqs import TARGET_PREFIX, SqsApi, event_sources, queue_definitions
from roomcast_local.storage import Storage
from roomcast_local.template import (
    create_tables,
    function_definitions,
    load_template,
    table_definitions,
    websocket_api,
)
from roomcast_local.websocket import Timeouts, WebSocketEndpoint
from roomcast_local.workers import Lambda, start_forkserver

# A function given the Socket.IO ping interval announces it (the open packet) or keeps it (the heartbeat).
PING_INTERVAL = "SOCKETIO_PING_INTERVAL"
log = logging.getLogger("stack")  # not "roomcast...": Powertools filters its own service name from root handlers


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 3001
    stage: str = "local"
    idle_timeout: float = 600.0
    hard_timeout: float = 7200.0
    dynamodb_endpoint: str | None = None
    schedule_every: float | None = None
    # SPEC 10's local default; AWS schedules no faster than a minute, so the template's is 60 s (decision 0038).
    ping_interval: int = 25
    secret: str = DEVELOPMENT_SECRET
    verbose: bool = False
    concurrency: int = 4
    serial: bool = False
    warm: int = 0


class LocalStack:
    def __init__(self, config: StackConfig, template: dict[str, Any] | None = None) -> None:
        self.config = config
        self.template = template or load_template()
        self.definitions = function_definitions(self.template)
        self.callers = Callers(self.template, config.stage, list(self.definitions))
        self._storage: Storage | None = None
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._scheduler: Scheduler | None = None
        self.sqs: SqsApi | None = None
        self.functions: Lambda | None = None
        self.websocket: WebSocketEndpoint | None = None
        self.url = ""
        self.dynamodb = ""

    async def start(self) -> None:
        listener = socket.create_server((self.config.host, self.config.port))
        host, port = listener.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        if self.config.dynamodb_endpoint:
            self.dynamodb = self.config.dynamodb_endpoint
        else:
            self._storage = await Storage.start()
            self.dynamodb = self._storage.endpoint
        await asyncio.gather(asyncio.to_thread(self._ensure_tables), asyncio.to_thread(start_forkserver))
        endpoints = Endpoints(self.url, self.config.stage, self.dynamodb)
        environments = {
            name: worker_environment(
                self.template,
                name,
                endpoints=endpoints,
                credentials=self.callers.credentials[name],
                secret=self.config.secret,
                verbose=self.config.verbose,
            )
            for name in self.definitions
        }
        for environment in environments.values():
            if PING_INTERVAL in environment:
                environment[PING_INTERVAL] = str(self.config.ping_interval)
        self.functions = Lambda(
            self.definitions, environments, function_arns(self.template), self.config.concurrency, self.config.serial
        )
        await self.functions.warm(self.config.warm)
        self._runner = web.AppRunner(self.build_app(self.functions), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, listener).start()
        pinging = {name: float(self.config.ping_interval) for name, env in environments.items() if PING_INTERVAL in env}
        self._scheduler = Scheduler(schedules(self.template), self.functions, self.config.schedule_every, pinging)
        self._scheduler.start()
        if self.sqs is not None:
            self.sqs.start()

    def build_app(self, functions: Lambda) -> web.Application:
        self.websocket = WebSocketEndpoint(
            websocket_api(self.template),
            functions,
            self.config.stage,
            Timeouts(self.config.idle_timeout, self.config.hard_timeout),
            self.spawn,
        )
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES * 2)
        ConnectionsApi(self.websocket, self.callers, self.config.stage, self.spawn).routes(app)
        LambdaApi(functions, deployed_names(self.template), self.callers, self.spawn).routes(app)
        eventbridge = EventBridgeApi(rules(self.template), functions, self.spawn)
        sqs = SqsApi(
            queue_definitions(self.template),
            event_sources(self.template),
            functions,
            self.callers,
            self.spawn,
            base_url=self.url,
        )
        self.sqs = sqs

        async def amazon_json(request: web.Request) -> web.Response:
            # EventBridge and SQS both speak AWS's JSON protocol on `POST /`; the target names the service.
            target = request.headers.get("X-Amz-Target", "")
            if target.startswith(TARGET_PREFIX):
                return await sqs.handle(request, target[len(TARGET_PREFIX) :])
            return await eventbridge.put_events(request)

        app.router.add_post("/", amazon_json)
        # Any other path upgrades: `/`, the stage, and Socket.IO clients' default `/socket.io/` (SPEC 10); a plain
        # GET of `/` or a console file is the console's.
        Console(self.config.secret).routes(app, self.websocket.handle)
        return app

    def _ensure_tables(self) -> None:
        client = boto3.client(
            "dynamodb",
            endpoint_url=self.dynamodb,
            region_name=REGION,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        )
        existing = set(client.list_tables()["TableNames"])
        # A table's name locally is its logical id, as `Ref` resolves it in each function's environment.
        names = [table.logical_id for table in table_definitions(self.template)]
        create_tables(client, self.template, {name: name for name in names if name not in existing})

    async def stop(self) -> None:
        """Close every connection as API Gateway does on shutdown; their $disconnect events run."""
        if self._scheduler is not None:
            self._scheduler.stop()
        if self.sqs is not None:
            self.sqs.stop()
        if self.websocket is not None:
            await self.websocket.close_all()
            while self.websocket.connections or self._background:
                await asyncio.sleep(0.02)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.functions is not None:
            await self.functions.stop()
        if self._storage is not None:
            await self._storage.stop()

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())
