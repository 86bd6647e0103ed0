"""Who signed a request. API Gateway's @connections and Lambda's Invoke accept only SigV4-signed requests
(https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html);
the local stack verifies the signature with botocore's own signer for the keys it gave each function."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from roomcast_local.environment import Credentials

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    method: str
    url: str  # as sent: scheme, Host, and the raw (still percent-encoded) path and query
    headers: Mapping[str, str]
    body: bytes


def signer_of(request: Request, service: str, known: Mapping[str, Credentials]) -> str:
    """The access key id that signed `request`. A key the stack gave out must carry a valid signature; any other
    key (a developer's own, which the stack cannot check) is taken as it comes."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    header = headers.get("authorization")
    if not header:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    signed = _AUTHORIZATION.match(header.strip())
    if signed is None:
        raise SignatureError("IncompleteSignatureException", "Authorization header requires SigV4 parameters")
    if signed["service"] != service:
        message = f"Credential should be scoped to correct service: '{service}'"
        raise SignatureError("InvalidSignatureException", message)
    credentials = known.get(signed["key"])
    if credentials is None:
        return signed["key"]
    names = signed["headers"].split(";")
    if any(name not in headers for name in names) or "x-amz-date" not in headers:
        raise SignatureError("IncompleteSignatureException", "a signed header is missing")
    copy = AWSRequest(
        method=request.method,
        url=request.url,
        data=request.body,
        headers={name: headers[name] for name in names},
    )
    copy.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(
        BotocoreCredentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
        service,
        signed["region"],
    )
    expected = signer.signature(signer.string_to_sign(copy, signer.canonical_request(copy)), copy)
    if not hmac.compare_digest(expected, signed["signature"]):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return signed["key"]
