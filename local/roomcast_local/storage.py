"""DynamoDB for the local stack: moto's DynamoDB application in a process of its own, so that storage work never
competes with the WebSocket API for the stack's interpreter lock. `python -m roomcast_local.storage` prints the
URL it listens on and serves until its stdin closes (so it ends with the stack, however the stack ends).

Served by aiohttp, not by moto's own werkzeug server (decision 0043): werkzeug closes the connection after every
response and starts a thread per connection, so each DynamoDB call paid for a TCP handshake, a thread and the
fight for the interpreter lock among those threads. Here connections are kept alive and requests run one at a
time on one thread, each to its end before the next begins, as DynamoDB applies each single-item write
atomically."""

from __future__ import annotations

import asyncio
import inspect
import io
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

# Header names aiohttp writes itself from the response it sends.
_FRAMING = frozenset({"content-length", "connection", "transfer-encoding", "date", "server"})
_MAX_REQUEST_BYTES = 64 * 1024 * 1024  # above any DynamoDB request (BatchWriteItem: 16 MB)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Storage:
    def __init__(self, process: asyncio.subprocess.Process, endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint

    @classmethod
    async def start(cls) -> Storage:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "roomcast_local.storage",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("the embedded DynamoDB (moto) did not start")
        return cls(process, line.decode().strip())

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class _Partition:
    """A moto table seen through one partition: all that its `query` reads of `all_items` when no index is named."""

    def __init__(self, table: Any, hash_key: Any) -> None:
        self._table = table
        self._hash_key = hash_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        found = self._table.items.get(self._hash_key)
        if found is None:
            return []
        if self._table.range_key_attr:
            return sorted(found.values(), key=lambda item: item.range_key)
        return [found]


def partition_query(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's Table.query (5.2.5) sorts every item of the table to pick one partition's, so a Query cost grew with
    the table and the local stack slowed down as messages accumulated. Queries of the table itself start from
    their partition; index queries keep moto's own path. Items, order, paging and filters stay moto's."""
    signature = inspect.signature(original)

    def query(table: Any, *args: Any, **kwargs: Any) -> Any:
        call = signature.bind(table, *args, **kwargs).arguments
        if call.get("index_name") or call["hash_key"] is None:
            return original(table, *args, **kwargs)
        return original(_Partition(table, call["hash_key"]), *args, **kwargs)

    return query


def wsgi_environ(request: web.Request, body: bytes) -> dict[str, Any]:
    host, _, port = request.host.partition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query_string,
        "SERVER_NAME": host,
        "SERVER_PORT": port or "80",
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ[key] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


def call_wsgi(app: WsgiApp, environ: dict[str, Any]) -> web.Response:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], _exc_info: Any = None) -> None:
        started[:] = [status, headers]

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started
    response = web.Response(status=int(status.split()[0]), body=body)
    for name, value in headers:
        if name.lower() not in _FRAMING:
            response.headers.add(name, value)
    return response


def application(app: WsgiApp) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        # Called on the event loop's thread itself: one request at a time, each to its end.
        return call_wsgi(app, wsgi_environ(request, await request.read()))

    served = web.Application(client_max_size=_MAX_REQUEST_BYTES)
    served.router.add_route("*", "/{path:.*}", handle)
    return served


async def _serve() -> None:
    from moto.dynamodb.models.table import Table
    from moto.moto_server.werkzeug_app import create_backend_app

    Table.query = partition_query(Table.query)  # type: ignore[method-assign]
    runner = web.AppRunner(application(create_backend_app("dynamodb")), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"http://{host}:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the stack still writes its last $disconnects here
    asyncio.run(_serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
