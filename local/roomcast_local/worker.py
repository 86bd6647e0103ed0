"""One Lambda execution environment, a process of its own: it takes its function's environment, imports the
handler once (the cold start), then runs one event at a time, as Lambda runs one event per environment.

Requests and outcomes are JSON lines on a socket to the stack; whatever the handler prints or logs goes to the
stack's own output, as it would go to CloudWatch."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import traceback
from io import BufferedIOBase
from multiprocessing.connection import Connection
from typing import Any

from roomcast_local.invoke import LambdaHandler, LocalContext, load_handler

# Imported once by the process that forks every worker, so a cold start pays only for the handler's own
# modules. None of them reads the environment on import; each worker sets its own before importing the handler.
PRELOAD = [
    "boto3",
    "botocore.session",
    "botocore.auth",
    "aiohttp",
    "pydantic",
    "jwt",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.utilities.typing",
    "aws_lambda_powertools.utilities.data_classes",
]


# Lambda's quota for a synchronous invocation's response (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
MAX_RESPONSE_BYTES = 6_291_556


def _error(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(error)[1:],
    }


def _reply(stream: BufferedIOBase, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def _run(handler: LambdaHandler, request: dict[str, Any], function: str, arn: str, memory: int) -> dict[str, Any]:
    context = LocalContext(
        function,
        arn,
        memory_limit_in_mb=memory,
        aws_request_id=request["requestId"],
        deadline=time.monotonic() + request["timeout"],
    )
    try:
        result = handler(request["event"], context)
    except Exception as error:
        return {"error": _error(error)}
    try:
        serialized = json.dumps(result)
    except (TypeError, ValueError) as error:
        return {"error": _error(error, "Runtime.MarshalError")}
    if len(serialized.encode()) > MAX_RESPONSE_BYTES:
        # Lambda's answer to a synchronous invocation whose result is over its 6 MB quota.
        message = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        return {"error": {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}}
    return {"result": json.loads(serialized)}


def serve(
    channel: Connection, handler_path: str, *, function: str, arn: str, memory: int, environment: dict[str, str]
) -> None:
    # Ctrl-C reaches the whole process group: the stack, not its workers, decides when they stop (after the
    # $disconnect of every open connection has run in them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environment)
    stream = socket.socket(fileno=os.dup(channel.fileno())).makefile("rwb")
    channel.close()
    started = time.perf_counter()
    handler: LambdaHandler | None = None
    init_error: dict[str, Any] | None = None
    try:
        handler = load_handler(handler_path)
    except Exception as error:
        init_error = _error(error, "Runtime.ImportModuleError")
    _reply(stream, {"initMs": (time.perf_counter() - started) * 1000})
    for line in stream:
        request = json.loads(line)
        outcome = {"error": init_error} if handler is None else _run(handler, request, function, arn, memory)
        _reply(stream, outcome)
