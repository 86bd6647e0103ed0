"""The local stack says what broke (decision 0073): a dead embedded DynamoDB stops it with one line naming it;
schedules whose function fails say so and keep their rate; a result over Lambda's 6 MB quota is an error."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from roomcast_local.testing import RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
FAILURES = str(Path(__file__).with_name("failures.yaml"))


def _wait_for(stack: RunningStack, pattern: str, count: int, within: float) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        found = re.findall(pattern, stack.log(), re.MULTILINE)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_killed_embedded_dynamodb_stops_the_stack_with_one_line_naming_it() -> None:
    stack = start_stack()
    (pid,) = _wait_for(stack, r"DynamoDB\s+http://\S+\s+\(embedded moto, pid (\d+)\)", 1, 10)

    async def works() -> None:
        client = await Client.open(stack.ws_url, "ana", company())
        assert "conversation" in await client.ok("conversation:create", {})
        await client.close()

    asyncio.run(works())
    os.kill(int(pid), signal.SIGKILL)
    assert stack.process.wait(timeout=60) == 1
    log = stack.log()
    said = [line for line in log.splitlines() if "embedded DynamoDB" in line]
    assert len(said) == 1, said
    assert f"the embedded DynamoDB (moto, pid {pid}) exited with code -9" in said[0]
    assert "make run" in said[0]
    assert log.index(said[0]) < log.index("shutting down")


@pytest.fixture(scope="module")
def failures() -> Iterator[RunningStack]:
    running = start_stack("--template", FAILURES, "--schedule-every", "1")
    yield running
    stop_stack(running)


def test_a_schedule_whose_function_raises_says_so_and_keeps_its_rate(failures: RunningStack) -> None:
    said = _wait_for(failures, r"schedule RaisingFunction\.Hourly failed \(RuntimeError\); it keeps its rate", 4, 30)
    assert len(said) >= 4
    raised = _wait_for(failures, r"RaisingFunction +raised RuntimeError: the scheduled job failed", 4, 10)
    assert len(raised) >= 4


def test_a_schedule_whose_function_cannot_start_says_so_and_keeps_its_rate(failures: RunningStack) -> None:
    pattern = r"schedule CrashingFunction\.Hourly failed \(Runtime\.ExitError\); it keeps its rate"
    assert len(_wait_for(failures, pattern, 3, 30)) >= 3
    assert _wait_for(failures, r"CrashingFunction +raised Runtime\.ExitError: .*exited while starting", 1, 10)


def test_a_result_over_six_megabytes_is_lambdas_error_and_the_environment_lives_on(failures: RunningStack) -> None:
    client = boto3.client(
        "lambda",
        endpoint_url=failures.http_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )

    def invoke(size: int) -> tuple[str | None, object]:
        answer = client.invoke(FunctionName="SizedFunction", Payload=json.dumps({"bytes": size}).encode())
        return answer.get("FunctionError"), json.loads(answer["Payload"].read())

    error, payload = invoke(7 * 1024 * 1024)
    assert error == "Unhandled"
    assert payload == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    }
    # 6,291,554 characters and their two quotes: exactly the quota.
    error, payload = invoke(6_291_554)
    assert error is None
    assert isinstance(payload, str)
    assert len(payload) == 6_291_554
    assert invoke(6_291_555)[0] == "Unhandled"

    # One environment served all three: the refusal did not break it. The stack's log reaches the test through a
    # pipe that another thread reads, so the third invocation's line may arrive a moment after its answer.
    sized = _wait_for(failures, r"^.* SizedFunction .*$", 3, 10)
    assert len(sized) == 3, sized
    assert [" cold " in line for line in sized] == [True, False, False]


def test_the_failing_stack_still_serves(failures: RunningStack) -> None:
    from websockets.asyncio.client import connect

    async def scenario() -> None:
        async with connect(failures.ws_url) as ws:
            await ws.send("hello")
            assert json.loads(await ws.recv()) == {"echo": "hello"}

    asyncio.run(scenario())
