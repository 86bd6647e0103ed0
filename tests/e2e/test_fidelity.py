"""The local stack behaves as API Gateway and Lambda do, point by point (issue 16). Each test names the AWS
behaviour it checks; docs/local-stack.md gives the source of each. tests/e2e/fidelity.yaml is a small API whose
handlers report what they were given."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roomcast_local.template import function_definitions, load_template
from roomcast_local.testing import RunningStack, start_stack, stop_stack
from roomcast_local.workers import FunctionPool

pytestmark = pytest.mark.e2e
T = TypeVar("T")
TEMPLATE = str(Path(__file__).with_name("fidelity.yaml"))
ECHO_ARN = "arn:aws:lambda:eu-west-1:111122223333:function:EchoFunction"
KIB = 1024
IDLE = 2.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def fidelity() -> Iterator[RunningStack]:
    running = start_stack("--template", TEMPLATE)
    yield running
    stop_stack(running)


def records(stack: RunningStack, key: str) -> list[dict[str, Any]]:
    """The JSON lines the fixture handlers printed that carry `key`."""
    found = []
    for line in stack.log().splitlines():
        if line.startswith("{") and f'"{key}"' in line:
            found.append(json.loads(line))
    return found


async def wait_for_record(stack: RunningStack, key: str, value: Any, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            for record in records(stack, key):
                if record[key] == value:
                    return record
            await asyncio.sleep(0.05)


async def echo(ws: ClientConnection, frame: dict[str, Any] | str) -> dict[str, Any]:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return answer


async def connection_id_of(ws: ClientConnection) -> str:
    return str((await echo(ws, {"action": "whoami"}))["connectionId"])


def boto(service: str, stack: RunningStack) -> Any:
    session = boto3.session.Session(aws_access_key_id="dev", aws_secret_access_key="dev", region_name="us-east-1")
    make: Any = session.client
    endpoint = stack.management_url if service == "apigatewaymanagementapi" else stack.http_url
    return make(service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


# ---- 1. concurrency ----


def test_invocations_overlap_and_another_client_is_not_held_behind_them(fidelity: RunningStack) -> None:
    """Lambda runs concurrent events in separate environments, in no particular order."""

    async def scenario() -> None:
        async with connect(fidelity.ws_url) as slow, connect(fidelity.ws_url) as quick:
            await echo(quick, {"action": "warm"})
            for tag in ("a", "b"):
                await slow.send(json.dumps({"do": "sleep", "seconds": 1.0, "tag": tag}))
            await asyncio.sleep(0.2)
            answered = await echo(quick, {"action": "meanwhile"})
            quick_done = time.time()
            first, second = [json.loads(await asyncio.wait_for(slow.recv(), 10)) for _ in range(2)]
            assert answered["route"] == "$default"
            assert first["start"] < second["end"]
            assert second["start"] < first["end"], "the two sleeps ran one after the other"
            assert quick_done < min(first["end"], second["end"]), "the other client waited behind the sleeps"

    run(scenario())


def test_disconnect_overtakes_a_handler_still_running(fidelity: RunningStack) -> None:
    """$disconnect fires when the socket closes, whatever is still being handled for that connection."""

    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            connection_id = await connection_id_of(ws)
            await ws.send(json.dumps({"do": "sleep", "seconds": 1.5, "tag": connection_id}))
            await asyncio.sleep(0.2)
        gone = await wait_for_record(fidelity, "disconnected", connection_id)
        slept = await wait_for_record(fidelity, "slept", connection_id)
        assert gone["at"] < slept["end"]

    run(scenario())


def test_serial_runs_one_invocation_at_a_time() -> None:
    serial = start_stack("--template", TEMPLATE, "--serial")
    try:

        async def scenario() -> None:
            async with connect(serial.ws_url) as ws:
                for tag in ("a", "b"):
                    await ws.send(json.dumps({"do": "sleep", "seconds": 0.5, "tag": tag}))
                first, second = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
                assert (first["slept"], second["slept"]) == ("a", "b")
                assert second["start"] >= first["end"]

        run(scenario())
    finally:
        stop_stack(serial)
    assert "serial: one invocation at a time" in serial.log()


def test_a_function_scales_out_to_its_limit_and_no_further() -> None:
    definition = function_definitions(load_template(Path(TEMPLATE)))["EchoFunction"]

    def sleep(tag: str) -> dict[str, Any]:
        body = json.dumps({"do": "sleep", "seconds": 0.6, "tag": tag})
        return {"requestContext": {"routeKey": "$default", "connectionId": tag}, "body": body}

    async def scenario() -> None:
        pool = FunctionPool(definition, {"PATH": os.environ.get("PATH", "")}, ECHO_ARN, limit=2)
        try:
            outcomes = await asyncio.gather(*(pool.invoke(sleep(tag)) for tag in "abc"))
        finally:
            await pool.stop()
        spans = sorted((json.loads(outcome.result["body"]) for outcome in outcomes), key=lambda span: span["start"])
        assert spans[1]["start"] < spans[0]["end"], "two invocations ran one after the other"
        assert spans[2]["start"] >= min(spans[0]["end"], spans[1]["end"]), "a third worker started"
        assert sorted(outcome.cold for outcome in outcomes) == [False, True, True]

    run(scenario())


def test_provisioned_workers_start_before_the_first_events_and_none_of_them_waits() -> None:
    definition = function_definitions(load_template(Path(TEMPLATE)))["EchoFunction"]

    def sleep(tag: str) -> dict[str, Any]:
        body = json.dumps({"do": "sleep", "seconds": 0.3, "tag": tag})
        return {"requestContext": {"routeKey": "$default", "connectionId": tag}, "body": body}

    async def scenario() -> None:
        pool = FunctionPool(definition, {"PATH": os.environ.get("PATH", "")}, ECHO_ARN, limit=2)
        try:
            inits = await pool.warm(3)
            assert (len(inits), len(pool.idle)) == (2, 2), "warmed past the function's limit"
            outcomes = await asyncio.gather(*(pool.invoke(sleep(tag)) for tag in "ab"))
            assert [outcome.cold for outcome in outcomes] == [False, False]
            assert len(pool.workers) == 2
            # The context's ARN is the pool's, whatever its region and account.
            asked = await pool.invoke({"requestContext": {"routeKey": "$default", "connectionId": "c"}, "body": "{}"})
            assert json.loads(asked.result["body"])["functionArn"] == ECHO_ARN
        finally:
            await pool.stop()

    run(scenario())


def test_an_idle_worker_that_died_is_replaced_rather_than_given_the_next_event() -> None:
    """Lambda never hands an event to an environment that is gone; a worker killed while idle (by the OOM killer,
    or by hand) left the next event unanswered, its writer failing with ConnectionResetError."""
    definition = function_definitions(load_template(Path(TEMPLATE)))["EchoFunction"]
    event = {"requestContext": {"routeKey": "$default", "connectionId": "c"}, "body": "{}"}

    async def scenario() -> None:
        pool = FunctionPool(definition, {"PATH": os.environ.get("PATH", "")}, ECHO_ARN, limit=1)
        try:
            await pool.warm(1)
            (dead,) = pool.idle
            dead.process.kill()
            await asyncio.to_thread(dead.process.join, 5)
            outcome = await pool.invoke(event)
            assert outcome.error is None, outcome.error
            assert outcome.cold, "the event ran in a new worker, so it had a cold start"
            assert dead not in pool.workers
        finally:
            await pool.stop()

    run(scenario())


def test_a_stack_started_warm_logs_each_workers_init_ahead_of_its_events() -> None:
    warm = start_stack("--template", TEMPLATE, "--warm", "1")
    try:

        async def scenario() -> None:
            async with connect(warm.ws_url) as ws:
                await echo(ws, {"action": "whoami"})

        run(scenario())
    finally:
        stop_stack(warm)
    lines = warm.log().splitlines()
    assert any("provisioned" in line and "EchoFunction" in line and "cold (init" in line for line in lines)
    echoed = [line for line in lines if "EchoFunction" in line and "provisioned" not in line]
    assert echoed
    assert all("cold" not in line for line in echoed)
    assert "1 started ahead" in warm.log()


def test_each_function_has_its_own_environment_and_cold_starts_show(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            environment = (await echo(ws, {"action": "env"}))["environment"]
            assert environment == {
                "OWN": "echo",
                "SHARED": "from-globals",
                "PEER": "PeerFunction",
                "PEER_ARN": "arn:aws:lambda:us-east-1:000000000000:function:PeerFunction",
                "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
            }
            arn = (await echo(ws, {"action": "env"}))["functionArn"]
            assert arn == "arn:aws:lambda:us-east-1:000000000000:function:EchoFunction"
            invoked = (await echo(ws, {"do": "invoke"}))["payload"]
            assert invoked == {"function": "PeerFunction", "own": "peer"}

    run(scenario())
    assert "cold (init" in fidelity.log()


def test_an_invocation_past_the_functions_timeout_is_stopped(fidelity: RunningStack) -> None:
    """HastyFunction's Timeout is 1 s: Lambda stops the invocation (and its environment) there."""

    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            started = time.monotonic()
            answered = await echo(ws, {"action": "hasty", "do": "sleep", "seconds": 3, "tag": "hasty"})
            assert answered["message"] == "Internal server error"
            assert time.monotonic() - started < 2.5
            assert (await echo(ws, {"action": "hasty"}))["route"] == "hasty"  # a new environment answers

    run(scenario())
    assert "Sandbox.Timedout: Task timed out after 1.00 seconds" in fidelity.log()


# ---- Lambda's Invoke API ----


def test_a_handler_invokes_another_function_synchronously_and_as_an_event(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            answered = await echo(ws, {"do": "invoke"})
            assert answered["status"] == 200
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"fromEvent": True}

    run(scenario())


def test_the_invoke_api_answers_a_boto3_lambda_client(fidelity: RunningStack) -> None:
    client = boto("lambda", fidelity)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:PeerFunction"
    answered = client.invoke(FunctionName=arn, Payload=b'{"x": 1}')
    assert answered["StatusCode"] == 200
    assert json.loads(answered["Payload"].read()) == {"function": "PeerFunction", "own": "peer"}
    assert client.invoke(FunctionName="PeerFunction", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    failed = client.invoke(FunctionName="EchoFunction", Payload=b'{"requestContext": {}}')
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "KeyError"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")


def test_a_function_without_invoke_permission_is_refused(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            refused = await echo(ws, {"action": "unprivileged", "do": "invoke", "target": "PeerFunction"})
            assert refused == {"invokeError": "AccessDeniedException"}

    run(scenario())


# ---- 2. sizes ----


def test_a_message_of_up_to_128_kib_may_come_in_frames_of_32_kib(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            body = json.dumps({"action": "big-but-fragmented", "pad": "x" * (60 * KIB)})
            chunks = [body[i : i + 20 * KIB] for i in range(0, len(body), 20 * KIB)]
            await ws.send(chunks)
            assert (json.loads(await asyncio.wait_for(ws.recv(), 10)))["bytes"] == len(body)

    run(scenario())


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(["x" * (32 * KIB + 1)], id="one frame over 32 KiB"),
        pytest.param(["x" * (32 * KIB)] * 4 + ["x"], id="fragments over 128 KiB"),
    ],
)
def test_too_big_closes_with_1009_and_disconnect_is_told_so(fidelity: RunningStack, frames: list[str]) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url, max_size=None) as ws:
            connection_id = await connection_id_of(ws)
            await ws.send(frames if len(frames) > 1 else frames[0])
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1009
        assert (await wait_for_record(fidelity, "disconnected", connection_id))["code"] == 1009

    run(scenario())


def test_a_reply_over_128_kib_is_not_delivered(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url, max_size=None) as ws:
            await ws.send(json.dumps({"do": "big"}))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1009

    run(scenario())


# ---- 3. @connections ----


def test_connection_ids_look_like_aws_ones_and_boto3_encodes_them(fidelity: RunningStack) -> None:
    management = boto("apigatewaymanagementapi", fidelity)

    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            connection_id = await connection_id_of(ws)
            assert len(connection_id) == 16
            assert connection_id.endswith("=")
            await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id, Data=b'{"hi": 1}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"hi": 1}

    run(scenario())


def _raw(method: str, url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=b"{}", method=method, headers=headers or {})  # noqa: S310 - local
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local stack
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_connections_requires_a_signature_and_the_stage(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            connection_id = (await connection_id_of(ws)).replace("=", "%3D")
            unsigned = await asyncio.to_thread(_raw, "POST", f"{fidelity.management_url}/@connections/{connection_id}")
            assert unsigned == 403
            wrong_stage = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=f"{fidelity.http_url}/prod",
                region_name="us-east-1",
                aws_access_key_id="dev",
                aws_secret_access_key="dev",
            )
            with pytest.raises(wrong_stage.exceptions.ForbiddenException):
                await asyncio.to_thread(wrong_stage.post_to_connection, ConnectionId=connection_id, Data=b"{}")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)

    run(scenario())


def test_a_function_posts_only_if_its_policy_allows_it(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            await ws.send(json.dumps({"do": "post"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"posted": True}
            refused = await echo(ws, {"action": "unprivileged", "do": "post"})
            assert refused == {"postError": "AccessDeniedException"}

    run(scenario())


def test_delete_closes_normally(fidelity: RunningStack) -> None:
    management = boto("apigatewaymanagementapi", fidelity)

    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            connection_id = await connection_id_of(ws)
            await asyncio.to_thread(management.delete_connection, ConnectionId=connection_id)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1000
        gone = await wait_for_record(fidelity, "disconnected", connection_id)
        assert (gone["code"], gone["reason"]) == (1000, "Connection Closed Normally")

    run(scenario())


# ---- 4. the authorizer's output ----


def test_authorizer_context_reaches_routes_as_strings(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            authorizer = (await echo(ws, {"action": "who"}))["authorizer"]
            assert authorizer == {
                "exp": "1700000000",
                "admin": "true",
                "ratio": "0.5",
                "name": "ana",
                "principalId": "ana",
            }

    run(scenario())


@pytest.mark.parametrize(("mode", "status"), [("nested", 500), ("elsewhere", 403)])
def test_a_nested_context_or_a_policy_for_another_api_refuses(fidelity: RunningStack, mode: str, status: int) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{fidelity.ws_url}?auth={mode}")
        assert refused.value.response.status_code == status

    run(scenario())


# ---- 5. binary frames ----


def test_a_binary_frame_closes_with_1003(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            connection_id = await connection_id_of(ws)
            await ws.send(b'{"action": "binary"}')
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1003
        assert (await wait_for_record(fidelity, "disconnected", connection_id))["code"] == 1003

    run(scenario())


# ---- 7. lesser differences ----


def test_connect_answers_subprotocol_and_its_failures_are_502(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(f"{fidelity.ws_url}?connect=protocol", subprotocols=["roomcast.v1"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "roomcast.v1"
        for mode in ("none", "raise"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{fidelity.ws_url}?connect={mode}")
            assert refused.value.response.status_code == 502

    run(scenario())


def test_malformed_replies_and_errors_answer_internal_server_error(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            for frame in ({"do": "not-a-string"}, {"do": "raise"}, {"do": "unserializable"}):
                answered = await echo(ws, frame)
                assert answered["message"] == "Internal server error"
                assert set(answered) == {"message", "connectionId", "requestId"}

    run(scenario())


def test_close_status_and_reason_reach_disconnect(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            connection_id = await connection_id_of(ws)
            await ws.close(4000, "bye now")
        gone = await wait_for_record(fidelity, "disconnected", connection_id)
        assert (gone["code"], gone["reason"]) == (4000, "bye now")
        async with connect(fidelity.ws_url) as ws:
            connection_id = await connection_id_of(ws)
            ws.transport.write(b"\x88\x80" + os.urandom(4))  # a masked close frame with no status
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        gone = await wait_for_record(fidelity, "disconnected", connection_id)
        assert (gone["code"], gone["reason"]) == (1005, "Client-side close frame status not set")

    run(scenario())


def test_route_values_are_selected_as_strings(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            assert (await echo(ws, {"action": 5}))["route"] == "5"
            assert (await echo(ws, {"action": [5]}))["route"] == "$default"

    run(scenario())


def test_connect_sees_forwarding_headers_and_a_domain_without_port(fidelity: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(fidelity.ws_url) as ws:
            await connection_id_of(ws)

    run(scenario())
    seen = records(fidelity, "connectHeaders")[-1]
    assert seen["domainName"] == "127.0.0.1"
    headers = {name.lower(): value for name, value in seen["connectHeaders"].items()}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"].startswith("Root=1-")


# ---- 6. the idle timer, and the hard limit ----


@pytest.fixture(scope="module")
def short_lived() -> Iterator[RunningStack]:
    # An idle timeout longer than a cold start on a busy machine (the timer runs while a handler starts).
    running = start_stack("--template", TEMPLATE, "--idle-timeout", str(IDLE), "--hard-timeout", str(3 * IDLE))
    yield running
    stop_stack(running)


def test_idle_counts_data_frames_both_ways_and_not_pings(short_lived: RunningStack) -> None:
    management = boto("apigatewaymanagementapi", short_lived)

    async def scenario() -> None:
        async with (
            connect(short_lived.ws_url, ping_interval=None) as pushed,
            connect(short_lived.ws_url, ping_interval=None) as pinging,
        ):
            pushed_id = await connection_id_of(pushed)
            await connection_id_of(pinging)
            started = time.monotonic()
            while time.monotonic() - started < 1.5 * IDLE:
                await asyncio.to_thread(management.post_to_connection, ConnectionId=pushed_id, Data=b"{}")
                assert json.loads(await asyncio.wait_for(pushed.recv(), 5)) == {}
                with contextlib.suppress(ConnectionClosed):  # closed by now, as it should be
                    await pinging.ping()
                await asyncio.sleep(0.3)
            assert pinging.close_code == 1001, "protocol pings kept an idle connection open"
            assert pushed.close_code is None, "a receive-only client was dropped while it received pushes"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(pushed.recv(), 3 * IDLE)
            assert pushed.close_code == 1001

    run(scenario())


def test_the_hard_limit_closes_with_1001_on_both_sides(short_lived: RunningStack) -> None:
    async def scenario() -> None:
        async with connect(short_lived.ws_url) as ws:
            connection_id = await connection_id_of(ws)

            async def keep_talking() -> None:
                while True:
                    await echo(ws, {"action": "busy"})
                    await asyncio.sleep(0.3)

            with pytest.raises(ConnectionClosed):
                await keep_talking()
            assert ws.close_code == 1001
        gone = await wait_for_record(short_lived, "disconnected", connection_id)
        assert gone["code"] == 1001

    run(scenario())


def test_roomcast_connect_keeps_itself_alive_with_the_ping_action(short_lived: RunningStack) -> None:
    command = [sys.executable, "-m", "roomcast_local", "connect", short_lived.ws_url, "--keepalive", "0.3"]
    client = subprocess.Popen(  # noqa: S603 - our own module
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert client.stdin is not None
    assert client.stdout is not None
    assert client.stdout.readline().startswith("connected")
    time.sleep(2 * IDLE)
    client.stdin.write('{"action": "still-here"}\n')
    client.stdin.flush()
    time.sleep(0.5)
    client.stdin.close()
    assert client.wait(timeout=10) == 0
    output = client.stdout.read()
    assert '"bytes": 24' in output, output  # the answer to the frame typed after the idle timeout
