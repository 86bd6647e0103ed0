"""AWS's JSON error responses, as botocore parses them (the `x-amzn-ErrorType` header names the exception)."""

from __future__ import annotations

import json

from aiohttp import web


def aws_error(status: int, code: str, message: str, content_type: str = "application/json") -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}),
        headers={"x-amzn-ErrorType": code, "Content-Type": content_type},
    )
