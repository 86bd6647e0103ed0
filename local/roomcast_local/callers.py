"""Which function is calling, and whether its policy in template.yaml lets it. Each function's workers sign
with keys of their own, so a request to @connections or to Lambda's Invoke names the function that made it;
a call a policy does not grant fails locally as it fails in AWS (AccessDeniedException)."""

from __future__ import annotations

import secrets
import string
from typing import Any

from aiohttp import web

from roomcast_local.environment import ACCOUNT, Credentials
from roomcast_local.errors import aws_error
from roomcast_local.iam import Statement, allows, function_statements
from roomcast_local.sigv4 import Request, SignatureError, signer_of

_KEY_ALPHABET = string.ascii_uppercase + string.digits


def _mint() -> Credentials:
    return Credentials(
        access_key_id="ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
        secret_access_key=secrets.token_urlsafe(30),
        session_token=secrets.token_urlsafe(48),
    )


class Callers:
    def __init__(self, template: dict[str, Any], stage: str, functions: list[str]) -> None:
        self.credentials = {function: _mint() for function in functions}
        self._keys = {credentials.access_key_id: credentials for credentials in self.credentials.values()}
        self._functions = {credentials.access_key_id: name for name, credentials in self.credentials.items()}
        self._statements: dict[str, list[Statement]] = {
            function: function_statements(template, function, stage) for function in functions
        }

    async def check(
        self, request: web.Request, service: str, action: str, resource: str
    ) -> tuple[str, web.Response | None]:
        """(who is calling, a refusal or None). Callers the stack did not mint keys for are not checked further:
        their policies live in a real account, not in this template."""
        body = await request.read()
        signed = Request(request.method, f"{request.scheme}://{request.host}{request.raw_path}", request.headers, body)
        try:
            key = signer_of(signed, service, self._keys)
        except SignatureError as error:
            return "unsigned", aws_error(403, error.code, error.message)
        function = self._functions.get(key)
        if function is None:
            return "external", None
        if allows(self._statements[function], action, resource):
            return function, None
        principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/{function}Role/{function}"
        message = f"User: {principal} is not authorized to perform: {action} on resource: {resource}"
        return function, aws_error(403, "AccessDeniedException", message)
