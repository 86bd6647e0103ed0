"""The local stack as a developer runs it: `roomcast serve` in its own process, on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

READY = re.compile(r"ready on (ws://[\d.]+:\d+)")


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    ws_url: str
    output: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return self.ws_url.replace("ws://", "http://")

    @property
    def management_url(self) -> str:
        """@connections of the stack's stage (`roomcast serve` defaults to `local`)."""
        return f"{self.http_url}/local"

    def log(self) -> str:
        return "".join(self.output)


def start_stack(*arguments: str, dynamodb: str | None = None) -> RunningStack:
    """`dynamodb`: an endpoint that outlives the stack (a restart keeps the data), instead of its own moto."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT_URL")}
    environment.pop("DYNAMODB_ENDPOINT", None)
    if dynamodb is not None:
        environment["DYNAMODB_ENDPOINT"] = dynamodb
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "roomcast_local", "serve", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        found = READY.search(line)
        if found:
            stack = RunningStack(process, found.group(1), output)
            threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True).start()
            return stack
    raise RuntimeError("the local stack did not start:\n" + "".join(output))


def stop_stack(stack: RunningStack) -> int:
    stack.process.send_signal(signal.SIGINT)
    return stack.process.wait(timeout=30)


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    running = start_stack()
    yield running
    stop_stack(running)
