"""Lambda's Invoke API on the stack's port: `POST /2015-03-31/functions/{FunctionName}/invocations` as the real
boto3 `lambda` client sends it, so handlers that invoke other functions (AWS_ENDPOINT_URL_LAMBDA points here)
run unchanged. `Event` answers 202 and runs the function in the background; `RequestResponse` answers 200 with
the function's result, or with `X-Amz-Function-Error: Unhandled` and the error when it raised.
https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from roomcast_local.callers import Callers
from roomcast_local.environment import function_arn
from roomcast_local.errors import aws_error
from roomcast_local.workers import Lambda


def function_named(name: str, names: dict[str, str]) -> str | None:
    """A function's name, or its ARN (with or without a `$LATEST` qualifier), to the template's function.
    `names`: deployed name -> logical id (environment.deployed_names)."""
    if name.startswith("arn:"):
        parts = name.split(":")
        name = parts[6] if len(parts) >= 7 and parts[5] == "function" else ""
        if len(parts) == 8 and parts[7] != "$LATEST":
            return None
    return names.get(name)


class LambdaApi:
    def __init__(
        self, functions: Lambda, names: dict[str, str], callers: Callers, spawn: Callable[[Awaitable[Any]], None]
    ) -> None:
        self.functions = functions
        self.names = names
        self.callers = callers
        self.spawn = spawn

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2015-03-31/functions/{function}/invocations", self._invoke)

    async def _invoke(self, request: web.Request) -> web.Response:
        requested = request.match_info["function"]
        function = function_named(requested, self.names)
        arn = function_arn(requested.rsplit(":function:", 1)[-1].split(":")[0])
        caller, refusal = await self.callers.check(request, "lambda", "lambda:InvokeFunction", arn)
        if refusal is not None:
            return refusal
        if function is None:
            return aws_error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        body = await request.read()
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            return aws_error(400, "InvalidRequestContentException", "Could not parse request body into json")
        return await self._run(request.headers.get("X-Amz-Invocation-Type", "RequestResponse"), function, event, caller)

    async def _run(self, kind: str, function: str, event: Any, caller: str) -> web.Response:
        if kind == "Event":
            self.spawn(self._in_background(function, event, caller))
            return web.Response(status=202)
        if kind == "DryRun":
            return web.Response(status=204)
        if kind != "RequestResponse":
            return aws_error(400, "InvalidParameterValueException", f"Invalid InvocationType: {kind}")
        # A handler waiting on this call must not queue behind itself under --serial.
        outcome = await self.functions.invoke(function, event, "invoke", caller, ordered=False)
        headers = {"X-Amz-Executed-Version": "$LATEST", "Content-Type": "application/json"}
        if outcome.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            return web.Response(body=json.dumps(outcome.error), headers=headers)
        return web.Response(body=json.dumps(outcome.result), headers=headers)

    async def _in_background(self, function: str, event: Any, caller: str) -> None:
        await self.functions.invoke(function, event, "invoke:Event", caller)
