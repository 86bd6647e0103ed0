"""`roomcast`: serve the local stack, mint development tokens, connect a terminal client, publish events."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from roomcast_local.environment import DEVELOPMENT_SECRET, mint_token
from roomcast_local.stack import LocalStack, StackConfig
from roomcast_local.template import load_template, websocket_api

DEFAULT_URL = "ws://127.0.0.1:3001"


def _secret() -> str:
    return os.environ.get("JWT_SECRET_KEY_CALL") or DEVELOPMENT_SECRET


# ---- serve ----


async def _serve(config: StackConfig, template: str | None) -> int:
    """Serve until Ctrl-C (0) or until a part the stack cannot serve without dies (1)."""
    try:
        stack = LocalStack(config, load_template(Path(template)) if template else None)
    except ValueError as error:  # a parameter override the template refuses
        raise SystemExit(f"roomcast serve: {error}") from error
    await stack.start()
    ws_url = stack.url.replace("http://", "ws://")
    print(f"roomcast local stack ready on {ws_url}", flush=True)
    print(f"  Console        {stack.url}/   (in a browser: docs/console.md)")
    print(f"  WebSocket      {ws_url}?token=<JWT>   (mint one: roomcast token --user u-1 --company acme)")
    print(
        f"  @connections   {stack.url}/{config.stage}/@connections/{{connectionId}}   (boto3 apigatewaymanagementapi)"
    )
    print(f"  Lambda         {stack.url}   (boto3 lambda invoke)")
    print(f"  EventBridge    {stack.url}   (boto3 events put_events)")
    storage = f"   (embedded moto, pid {stack.storage_pid})" if stack.storage_pid else ""
    print(f"  DynamoDB       {stack.dynamodb}{storage}")
    mode = "serial: one invocation at a time" if config.serial else f"up to {config.concurrency} workers per function"
    if config.warm:
        mode += f", {min(config.warm, 1 if config.serial else config.concurrency)} started ahead"
    print(f"  Functions      {len(stack.definitions)}, {mode}")
    routes = websocket_api(stack.template).routes
    actions = [key for key in routes if not key.startswith("$")]
    served = f"{len(actions)} actions" if actions else "no action routes: every action goes to the default route"
    print(f"  Routes         {len(routes)}, {served}")
    for name, value in config.parameters.items():
        print(f"  Parameter      {name}={value}")
    if config.secret == DEVELOPMENT_SECRET:
        print(f"  JWT secret     {DEVELOPMENT_SECRET!r} (development default; set JWT_SECRET_KEY_CALL)")
    sys.stdout.flush()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    assert stack.failed is not None
    interrupted: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    failed: asyncio.Future[Any] = stack.failed
    await asyncio.wait([interrupted, failed], return_when=asyncio.FIRST_COMPLETED)
    interrupted.cancel()
    print("shutting down: closing connections", flush=True)
    await stack.stop()
    return 1 if stack.failed.done() else 0


def parameter_overrides(pairs: list[str]) -> dict[str, str]:
    """`Key=Value` pairs, as `sam deploy --parameter-overrides` takes them."""
    given = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise SystemExit(f"roomcast serve: --parameter-overrides takes Key=Value pairs, not {pair!r}")
        given[name] = value
    return given


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("werkzeug", "botocore", "boto3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = StackConfig(
        host=args.host,
        port=args.port,
        idle_timeout=args.idle_timeout,
        hard_timeout=args.hard_timeout,
        dynamodb_endpoint=os.environ.get("DYNAMODB_ENDPOINT") or None,
        secret=_secret(),
        verbose=args.verbose,
        schedule_every=args.schedule_every,
        ping_interval=args.ping_interval,
        stage=args.stage,
        concurrency=args.concurrency,
        serial=args.serial,
        warm=args.warm,
        parameters=parameter_overrides(args.parameter_overrides),
    )
    return asyncio.run(_serve(config, args.template))


# ---- token ----


def token(args: argparse.Namespace) -> int:
    print(mint_token(args.user, args.company, args.email, args.expires_in, args.secret or _secret()))
    return 0


# ---- connect ----


def parse_line(line: str) -> str:
    """A JSON frame as typed, or the shorthand `action {data}` / `action`."""
    line = line.strip()
    if line.startswith("{"):
        return line
    action, _, data = line.partition(" ")
    frame: dict[str, Any] = {"action": action}
    if data.strip():
        frame["data"] = json.loads(data)
    return json.dumps(frame)


KEEPALIVE = {"action": "ping", "ackId": "keepalive"}


async def _keep_alive(ws: Any, every: float) -> None:
    """API Gateway's idle timer counts data frames only, so protocol pings would not keep the connection open:
    send the `ping` action instead (its answer is not printed)."""
    while True:
        await asyncio.sleep(every)
        await ws.send(json.dumps(KEEPALIVE))


def _is_keepalive_answer(text: str) -> bool:
    try:
        frame = json.loads(text)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("ackId") == KEEPALIVE["ackId"]


async def _connect(url: str, keepalive: float) -> None:
    from websockets.asyncio.client import connect as websocket_connect

    async with websocket_connect(url, max_size=None) as ws:
        address = url.split("?", maxsplit=1)[0]
        print(f"connected to {address}; type JSON frames or `action {{data}}`, Ctrl-D to quit", flush=True)

        async def printer() -> None:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if not _is_keepalive_answer(text):
                    print(f"< {text}", flush=True)

        background = [asyncio.ensure_future(printer()), asyncio.ensure_future(_keep_alive(ws, keepalive))]
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            try:
                await ws.send(parse_line(line))
            except ValueError as error:
                print(f"! not JSON: {error}", flush=True)
        await ws.close()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def connect(args: argparse.Namespace) -> int:
    credential = args.token or mint_token(args.user, args.company, None, 3600, _secret())
    separator = "&" if "?" in args.url else "?"
    try:
        asyncio.run(_connect(f"{args.url}{separator}token={credential}", args.keepalive))
    except OSError as error:
        print(f"cannot connect: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # websockets' handshake refusal carries the HTTP status
        print(f"connection failed: {error}", file=sys.stderr)
        return 1
    return 0


# ---- publish ----


def publish(args: argparse.Namespace) -> int:
    """One event through the Python emitter (emitters/python), which checks it against the contract first."""
    import boto3

    from roomcast_emitter import Emitter, InvalidEvent, PublishFailed

    try:
        detail = json.loads(args.detail)
    except ValueError as error:
        print(f"invalid detail: not JSON ({error})", file=sys.stderr)
        return 2
    if not isinstance(detail, dict):
        print("invalid detail: not a JSON object", file=sys.stderr)
        return 2
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    if args.aws:
        client = boto3.client("events", region_name=region)
    else:
        client = boto3.client(
            "events",
            endpoint_url=args.endpoint,
            region_name=region,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        )
    company = Emitter(client, bus=args.bus, source=args.source).company(str(detail.pop("companyId", "")))
    try:
        (event_id,) = company.put_many([(args.detail_type, detail)])
    except InvalidEvent as error:
        print(f"invalid detail: {error}", file=sys.stderr)
        return 2
    except PublishFailed as error:
        print(f"not published: {error}", file=sys.stderr)
        return 1
    print(event_id)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="roomcast", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the local stack (what `make run` runs)")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3001")))
    serve_cmd.add_argument("--idle-timeout", type=float, default=600.0, help="seconds (API Gateway: 600)")
    serve_cmd.add_argument("--hard-timeout", type=float, default=7200.0, help="seconds (API Gateway: 7200)")
    serve_cmd.add_argument("--template", help="another SAM template to serve (default: the repository's)")
    serve_cmd.add_argument("--stage", default="local", help="the stage @connections paths must name")
    serve_cmd.add_argument(
        "--concurrency", type=int, default=4, help="workers per function, as Lambda scales out (default 4)"
    )
    serve_cmd.add_argument(
        "--warm",
        type=int,
        default=0,
        help="workers per function started with the stack, as provisioned concurrency (default 0: on first use)",
    )
    serve_cmd.add_argument(
        "--serial", action="store_true", help="one invocation at a time, in arrival order (for debugging)"
    )
    serve_cmd.add_argument("--verbose", action="store_true", help="show the handlers' own logs and metrics")
    serve_cmd.add_argument(
        "--schedule-every", type=float, help="run scheduled functions every N seconds instead of their rate"
    )
    serve_cmd.add_argument(
        "--ping-interval",
        type=int,
        default=25,
        help="seconds: the Socket.IO ping interval announced, and the heartbeat's schedule (default 25)",
    )
    serve_cmd.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters, as sam deploy takes them (e.g. RoutePerAction=false)",
    )
    serve_cmd.set_defaults(run=serve)

    token_cmd = commands.add_parser("token", help="mint a development JWT")
    token_cmd.add_argument("--user", required=True)
    token_cmd.add_argument("--company", required=True)
    token_cmd.add_argument("--email")
    token_cmd.add_argument("--expires-in", type=int, default=3600, help="seconds; 0 for no exp claim")
    token_cmd.add_argument("--secret", help="default: JWT_SECRET_KEY_CALL or the development secret")
    token_cmd.set_defaults(run=token)

    connect_cmd = commands.add_parser("connect", help="an interactive WebSocket client, like wscat")
    connect_cmd.add_argument("url", nargs="?", default=DEFAULT_URL)
    connect_cmd.add_argument("--token")
    connect_cmd.add_argument("--user", default="u-1")
    connect_cmd.add_argument("--company", default="acme")
    connect_cmd.add_argument(
        "--keepalive", type=float, default=300.0, help="seconds between `ping` actions (API Gateway idles out at 600)"
    )
    connect_cmd.set_defaults(run=connect)

    publish_cmd = commands.add_parser("publish", help="put an EventBridge event, locally or in AWS")
    publish_cmd.add_argument("detail_type", help="Emit, Notify, MessageReceived, ...")
    publish_cmd.add_argument("detail", help="the detail, as JSON")
    publish_cmd.add_argument("--source", default="roomcast.cli")
    publish_cmd.add_argument("--bus", default="roomcast")
    publish_cmd.add_argument("--endpoint", default="http://127.0.0.1:3001")
    publish_cmd.add_argument("--aws", action="store_true", help="publish to AWS with your credentials")
    publish_cmd.set_defaults(run=publish)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result
