"""Lambda's execution model for the local stack: each function has its own warm worker processes, started on
first use; concurrent invocations of one function run in separate workers, up to a limit per function.

AWS runs each event in its own execution environment and scales out for concurrent events
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html): there is no order between two events,
and a handler never shares its process with another event in flight. Processes, not threads, because a
handler's module state (Powertools' Logger and Metrics, cached clients) belongs to one environment."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import socket
import time
import uuid
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from roomcast_local.template import FunctionDefinition
from roomcast_local.worker import PRELOAD, serve

log = logging.getLogger("stack")  # not "roomcast...": Powertools filters its own service name from root handlers

_LINE_LIMIT = 8 * 1024 * 1024  # above Lambda's 6 MB synchronous payload limit


@dataclass
class Outcome:
    result: Any = None
    error: dict[str, Any] | None = None
    cold: bool = False
    init_ms: float = 0.0


class WorkerGone(Exception):
    """The worker process ended or was stopped while running an event."""


_forks = multiprocessing.get_context("forkserver")
_forks.set_forkserver_preload(PRELOAD)


def start_forkserver() -> None:
    """Start, ahead of the first invocation, the process that forks workers (it imports PRELOAD once)."""
    multiprocessing.forkserver.ensure_running()


class Worker:
    """One execution environment: a process that has imported the function's handler."""

    def __init__(
        self, process: BaseProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, init_ms: float
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.init_ms = init_ms
        self.used = False

    @classmethod
    async def start(cls, definition: FunctionDefinition, environment: dict[str, str], arn: str) -> Worker:
        ours, theirs = _forks.Pipe(duplex=True)
        process = _forks.Process(
            target=serve,
            args=(theirs, definition.handler),
            kwargs={
                "function": definition.logical_id,
                "arn": arn,
                "memory": definition.memory_mb,
                "environment": environment,
            },
            name=f"lambda-{definition.logical_id}",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        theirs.close()
        channel = socket.socket(fileno=os.dup(ours.fileno()))
        ours.close()
        reader, writer = await asyncio.open_connection(sock=channel, limit=_LINE_LIMIT)
        ready = await reader.readline()
        if not ready:
            raise WorkerGone(f"{definition.logical_id}: the worker exited while starting")
        return cls(process, reader, writer, float(json.loads(ready)["initMs"]))

    async def run(self, event: Any, timeout: float) -> dict[str, Any]:
        request = {"event": event, "requestId": str(uuid.uuid4()), "timeout": timeout}
        try:
            self.writer.write(json.dumps(request).encode() + b"\n")
            await self.writer.drain()
        except ConnectionError as error:
            raise WorkerGone("the worker exited") from error
        try:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
        except TimeoutError:
            # Lambda stops an environment whose invocation outlives the function's timeout.
            self.kill()
            message = f"Task timed out after {timeout:.2f} seconds"
            return {"error": {"errorType": "Sandbox.Timedout", "errorMessage": message}}
        if not line:
            raise WorkerGone("the worker exited")
        outcome: dict[str, Any] = json.loads(line)
        return outcome

    @property
    def alive(self) -> bool:
        return self.process.is_alive() and not self.writer.is_closing()

    def kill(self) -> None:
        self.writer.close()
        self.process.kill()

    async def stop(self) -> None:
        self.writer.close()  # the worker reads the end of its requests and exits
        await asyncio.to_thread(self.process.join, 5)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join)


class FunctionPool:
    """The warm workers of one function."""

    def __init__(self, definition: FunctionDefinition, environment: dict[str, str], arn: str, limit: int) -> None:
        self.definition = definition
        self.environment = environment
        self.arn = arn
        self.limit = limit
        self.idle: list[Worker] = []
        self.workers: set[Worker] = set()
        self._starting = 0
        self._freed = asyncio.Condition()

    async def _acquire(self) -> Worker:
        async with self._freed:
            while True:
                # A worker that died while idle (killed, out of memory) is gone, as Lambda discards such an environment.
                for worker in [worker for worker in self.idle if not worker.alive]:
                    self.idle.remove(worker)
                    self.workers.discard(worker)
                if self.idle or len(self.workers) + self._starting < self.limit:
                    break
                await self._freed.wait()
            if self.idle:
                return self.idle.pop()
            self._starting += 1
        try:
            worker = await Worker.start(self.definition, self.environment, self.arn)
            self.workers.add(worker)
            return worker
        finally:
            async with self._freed:
                self._starting -= 1
                self._freed.notify()

    async def _release(self, worker: Worker) -> None:
        async with self._freed:
            if worker.alive:
                self.idle.append(worker)
            else:
                self.workers.discard(worker)
            self._freed.notify()

    async def warm(self, count: int) -> list[float]:
        """Start workers ahead of any event, as provisioned concurrency does: they are idle when the first events
        arrive, which find no cold start. Returns each one's init time."""
        async with self._freed:
            count = max(0, min(count, self.limit - len(self.workers) - self._starting))
            self._starting += count
        try:
            started = await asyncio.gather(
                *(Worker.start(self.definition, self.environment, self.arn) for _ in range(count)),
                return_exceptions=True,
            )
        finally:
            async with self._freed:
                self._starting -= count
                for worker in started:
                    if isinstance(worker, Worker):
                        worker.used = True  # its init is over: no event will wait for it
                        self.workers.add(worker)
                        self.idle.append(worker)
                self._freed.notify_all()
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        return [worker.init_ms for worker in started if isinstance(worker, Worker)]

    async def invoke(self, event: Any) -> Outcome:
        try:
            worker = await self._acquire()
        except WorkerGone as error:
            # An environment that dies during its init (a crash at import): Lambda reports the invocation failed.
            return Outcome(error={"errorType": "Runtime.ExitError", "errorMessage": str(error)}, cold=True)
        cold = not worker.used
        worker.used = True
        try:
            reply = await worker.run(event, self.definition.timeout_seconds)
        except WorkerGone as error:
            worker.kill()
            reply = {"error": {"errorType": "Runtime.ExitError", "errorMessage": str(error)}}
        finally:
            await self._release(worker)
        return Outcome(reply.get("result"), reply.get("error"), cold, worker.init_ms if cold else 0.0)

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in list(self.workers)))
        self.workers.clear()
        self.idle.clear()


class Lambda:
    """Every function of the template, invoked by name; one log line per invocation."""

    def __init__(
        self,
        definitions: dict[str, FunctionDefinition],
        environments: dict[str, dict[str, str]],
        arns: dict[str, str],
        concurrency: int,
        serial: bool,
    ) -> None:
        self.definitions = definitions
        self._pools = {
            name: FunctionPool(definition, environments[name], arns[name], 1 if serial else concurrency)
            for name, definition in definitions.items()
        }
        # --serial: one invocation at a time in arrival order, for debugging (asyncio.Lock wakes waiters in order).
        self._serial = asyncio.Lock() if serial else None

    async def invoke(self, function: str, event: Any, label: str, subject: str, ordered: bool = True) -> Outcome:
        """Run `event` in one of `function`'s workers. `ordered=False` lets a synchronous invocation made by a
        running handler bypass --serial's queue, which it would otherwise wait on forever."""
        started = time.perf_counter()
        if self._serial is not None and ordered:
            async with self._serial:
                outcome = await self._pools[function].invoke(event)
        else:
            outcome = await self._pools[function].invoke(event)
        elapsed = (time.perf_counter() - started) * 1000
        log.info(
            "%-22s %-16s %-24s %s %.1f ms%s",
            label,
            subject,
            function,
            _summary(outcome),
            elapsed,
            f" cold (init {outcome.init_ms:.0f} ms)" if outcome.cold else "",
        )
        return outcome

    async def warm(self, per_function: int) -> None:
        """Start `per_function` workers of every function; each start is logged with its init time, so the cold
        starts stay visible though no event waits for them."""
        for function, inits in zip(
            self._pools,
            await asyncio.gather(*(pool.warm(per_function) for pool in self._pools.values())),
            strict=True,
        ):
            for init_ms in inits:
                log.info("%-22s %-16s %-24s ok cold (init %.0f ms)", "provisioned", "-", function, init_ms)

    async def stop(self) -> None:
        await asyncio.gather(*(pool.stop() for pool in self._pools.values()))


def _summary(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"raised {outcome.error.get('errorType')}: {outcome.error.get('errorMessage')}"
    if isinstance(outcome.result, dict) and "statusCode" in outcome.result:
        return str(outcome.result["statusCode"])
    return "ok"
