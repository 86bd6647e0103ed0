"""DynamoDB's JSON protocol by hand, under a botocore client's events (decision 0104).

A DynamoDB call is a POST of JSON with `X-Amz-Target: DynamoDB_20120810.<Op>`. botocore spends about a
`get_item`'s worth of CPU a call around that (the model walked to validate, serialise and parse, the endpoint
ruleset resolved, the user agent built, headers kept in `email.message`, the signing key derived anew), seven times
a send. `JsonClient` makes the same request itself: the body as botocore's serializer writes it (the stores'
parameters are already DynamoDB JSON: `shared.stores.dynamo` serialises them), signed by decision 0075's signer
with the day's key, sent over connections kept alive by `shared.stores.dynamo_http` (decision 0105); answers read
with `json.loads`, error answers parsed by botocore's own parser (so a `ClientError` has the `response` botocore
gives it).

It is driven by the botocore client it is made from, which keeps everything around the request botocore's:
- the events, emitted through `client.meta.events` with the arguments botocore gives them: provide-client-params,
  before-parameter-build, before-call (whose answer replaces the call), before-sign, before-send (moto's
  `mock_aws` answers there, so tests run this code), needs-retry (botocore's standard-mode handler, with the
  client's retry config and retry quota, decides each retry and its pause), after-call and after-call-error.
  request-created, response-received and before-parse are not emitted: their handlers for DynamoDB are botocore's
  own signer and retry headers, which this replaces;
- the credentials (the client's, from botocore's provider chain, read on every call: refreshed ones sign the next),
  the region, the endpoint (`client.meta.endpoint_url`: the configured one or the region's), the timeouts, the pool
  size and the user agent of its config, its exception classes.
tests/test_dynamo_client.py checks the request byte for byte against botocore's serializer and signer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import urllib3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.endpoint import convert_to_response_dict
from botocore.exceptions import NoCredentialsError
from botocore.parsers import create_parser

from shared.protocol.signing import PostSigner
from shared.stores.dynamo_http import Headers, Transport

if TYPE_CHECKING:
    from botocore.model import OperationModel

SERVICE = "dynamodb"
CONTENT_TYPE = "application/x-amz-json-1.0"


class _Body:
    """An answer's body already read, as botocore's AWSResponse reads a raw response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


class _Response(AWSResponse):
    """An answer read by the transport: its body already read, its headers already by lower-cased name and looked
    up in any case (not copied once more into botocore's HeadersDict)."""

    def __init__(self, url: str, status_code: int, headers: Headers, content: bytes) -> None:
        self.url = url
        self.status_code = status_code
        self.headers = headers  # type: ignore[assignment]
        self.raw = _Body(content)
        self._content = content


class _Operation:
    """What a call to one operation needs that does not change: its model (for names, and for parsing errors),
    its event names, its target and the user agent."""

    def __init__(self, model: OperationModel, user_agent: str) -> None:
        self.model = model
        self.name = model.name
        prefix = model.service_model.service_id.hyphenize()
        self.provide, self.build, self.before_call, self.before_sign, self.before_send, self.needs_retry = (
            f"{event}.{prefix}.{model.name}"
            for event in (
                "provide-client-params",
                "before-parameter-build",
                "before-call",
                "before-sign",
                "before-send",
                "needs-retry",
            )
        )
        self.after_call = f"after-call.{prefix}.{model.name}"
        self.after_call_error = f"after-call-error.{prefix}.{model.name}"
        self.target = f"{model.metadata['targetPrefix']}.{model.name}"
        self.user_agent = user_agent


class JsonClient:
    """DynamoDB calls through `client`'s events, credentials and configuration, made by hand (see the module)."""

    def __init__(self, client: Any) -> None:
        # Not the client itself: `shared.stores.dynamo` caches callers weakly by client, and a caller holding its
        # client would keep it (and this pool) alive for ever.
        self._exceptions = client.exceptions
        self._endpoint = client._endpoint  # needs-retry's `endpoint` argument, as botocore gives it
        meta = client.meta
        self._events = meta.events
        self._service_model = meta.service_model
        self._config = meta.config
        self._region = meta.region_name
        endpoint = urlsplit(meta.endpoint_url)
        self._endpoint_url = f"{endpoint.scheme}://{endpoint.netloc}"
        # Where botocore posts a call (its url_path "/" joined to the endpoint): the endpoint's own path, if any.
        self._path = endpoint.path or "/"
        self._url = self._endpoint_url + self._path
        self._request_signer = client._request_signer  # what botocore passes its hooks; its credentials sign here
        self._signer = PostSigner(self._endpoint_url, self._request_signer._credentials, self._region, SERVICE)
        self._operations: dict[str, _Operation] = {}
        self._parser = create_parser(self._service_model.resolved_protocol)
        config = self._config
        # One transport for this client's calls (decision 0047: calls at once have clients, and pools, of their own).
        self._transport = Transport(
            self._endpoint_url,
            self._signer.host,
            verify=client._endpoint.http_session._verify,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            max_idle=config.max_pool_connections,
        )

    def call(self, operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
        """One call, as `client.<operation>(**params)` makes it: same events, retries, answer and errors."""
        operation = self._operations.get(operation_name) or self._operation(operation_name)
        model = operation.model
        events = self._events
        context: dict[str, Any] = {
            "client_region": self._region,
            "client_config": self._config,
            "has_streaming_input": False,
            "auth_type": model.resolved_auth_type,
            "unsigned_payload": model.unsigned_payload,
            "auth_options": self._service_model.metadata.get("auth"),
        }
        replaced = [answer for _, answer in events.emit(operation.provide, params=params, model=model, context=context)]
        params = next((answer for answer in replaced if answer is not None), params)
        events.emit(operation.build, params=params, model=model, context=context)
        request_dict: dict[str, Any] = {
            "url_path": "/",
            "query_string": "",
            "method": "POST",
            "headers": {"X-Amz-Target": operation.target, "Content-Type": CONTENT_TYPE},
            "body": json.dumps(params, default=_blob).encode("utf-8"),
            "url": self._url,
            "context": context,
        }
        if operation.user_agent:
            request_dict["headers"]["User-Agent"] = operation.user_agent
        _, answered = events.emit_until_response(
            operation.before_call,
            model=model,
            params=request_dict,
            request_signer=self._request_signer,
            context=context,
        )
        if answered is not None:
            http, parsed = answered
        else:
            try:
                http, parsed = self._send(operation, request_dict)
            except Exception as error:
                events.emit(operation.after_call_error, exception=error, context=context)
                raise
        events.emit(operation.after_call, http_response=http, parsed=parsed, model=model, context=context)
        if http.status_code >= 300:
            code = context.get("error_code_override") or parsed.get("Error", {}).get("Code")
            raise self._exceptions.from_code(code)(parsed, operation_name)
        return parsed  # type: ignore[no-any-return]

    def _operation(self, name: str) -> _Operation:
        operation = _Operation(self._service_model.operation_model(name), self._config.user_agent or "")
        self._operations[name] = operation
        return operation

    def _send(self, operation: _Operation, request_dict: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        """Every attempt of one request, each signed afresh, retried as the client's needs-retry handlers say."""
        context = request_dict["context"]
        retries = context.setdefault("retries", {})
        retries["invocation-id"] = str(uuid.uuid4())
        attempts = 0
        while True:
            attempts += 1
            retries["attempt"] = attempts
            answer: tuple[AWSResponse, dict[str, Any]] | None = None
            failure: Exception | None = None
            try:
                answer = self._attempt(operation, request_dict)
            except Exception as error:
                failure = error
            pause = self._events.emit(
                operation.needs_retry,
                response=answer,
                endpoint=self._endpoint,
                operation=operation.model,
                attempts=attempts,
                caught_exception=failure,
                request_dict=request_dict,
            )
            delay = next((value for _, value in pause if value is not None), None)
            if delay is None or delay is False:
                break
            time.sleep(delay)
        if failure is not None:
            raise failure
        assert answer is not None
        if "ResponseMetadata" in answer[1]:
            answer[1]["ResponseMetadata"]["RetryAttempts"] = attempts - 1
        return answer

    def _attempt(self, operation: _Operation, request_dict: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        # Case-insensitive headers, as hooks (and moto) read them, without botocore's email.message ones.
        headers: Any = urllib3.HTTPHeaderDict(request_dict["headers"])
        request = AWSPreparedRequest("POST", self._url, headers, request_dict["body"], stream_output=False)
        self._events.emit(
            operation.before_sign,
            request=request,
            signing_name=SERVICE,
            region_name=self._region,
            signature_version="v4",
            request_signer=self._request_signer,
            operation_name=operation.name,
        )
        # Signed as botocore signs: every header but those it leaves out, the host, the date, the session token.
        signed = {name: value for name, value in headers.items() if name.lower() not in UNSIGNED}
        body: Any = request.body  # bytes, as a before-sign hook left it
        payload_sha256 = hashlib.sha256(body).hexdigest()
        if self._request_signer._credentials is None:
            raise NoCredentialsError  # as botocore's signer raises it, rather than failing on the missing value
        headers.update(self._signer.batch().headers(self._path, payload_sha256, signed=signed))
        responses = self._events.emit(operation.before_send, request=request)
        http = next((response for _, response in responses if response is not None), None)
        if http is None:
            http = self._http(request)
        return http, self._parse(operation, http)

    def _http(self, request: AWSPreparedRequest) -> AWSResponse:
        """The request over this client's transport, which raises its failures as botocore's (decision 0105)."""
        headers: Any = request.headers
        body: Any = request.body
        answer = self._transport.post(self._path, headers.items(), body)
        return _Response(request.url, answer.status, answer.headers, answer.body)

    def _parse(self, operation: _Operation, http: AWSResponse) -> dict[str, Any]:
        """A success as botocore parses DynamoDB's (binary values as bytes, ResponseMetadata); an error by
        botocore's own parser, its modeled fields (a failed condition's Item, a cancellation's reasons) included."""
        content = http.content
        if http.status_code >= 300:
            response_dict = convert_to_response_dict(http, operation.model)
            output_shape: Any = operation.model.output_shape
            parsed: dict[str, Any] = self._parser.parse(response_dict, output_shape)
            error_shape = self._service_model.shape_for_error_code(parsed.get("Error", {}).get("Code"))
            if error_shape is not None:
                parsed.update(self._parser.parse(response_dict, error_shape))
            return parsed
        try:
            parsed = json.loads(content, object_hook=_binary) if b'"B' in content else json.loads(content or b"{}")
        except ValueError:
            # As botocore's parser reads a body that is not JSON, so that needs-retry sees the answer: a body its
            # x-amz-crc32 does not match is retried, not raised.
            parsed = {"message": content.decode("utf-8", "replace")}
        answered: Any = http.headers
        headers = (
            dict(answered)
            if type(answered) is Headers  # the transport's: already by lower-cased name
            else {name.lower(): value for name, value in answered.items()}
        )
        metadata: dict[str, Any] = {}
        if "x-amzn-requestid" in headers:
            metadata["RequestId"] = headers["x-amzn-requestid"]
        metadata["HTTPStatusCode"] = http.status_code
        metadata["HTTPHeaders"] = headers
        parsed["ResponseMetadata"] = metadata
        return parsed


# The headers botocore's SigV4 signer leaves unsigned (botocore.auth.SIGNED_HEADERS_BLACKLIST).
UNSIGNED = frozenset(("expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"))


def _blob(value: Any) -> str:
    """A binary attribute value as botocore's serializer writes it: base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("utf-8")
    raise TypeError(f"not serialisable to DynamoDB JSON: {type(value).__name__}")


def _binary(value: dict[str, Any]) -> Any:
    """Binary attribute values (`B`, `BS`) as bytes, as botocore's parser reads them. Only an attribute value
    has one of these keys holding a string or a list of strings: an item's attributes hold maps."""
    if len(value) == 1:
        if isinstance(encoded := value.get("B"), str):
            return {"B": base64.b64decode(encoded)}
        if isinstance(encoded := value.get("BS"), list) and all(isinstance(part, str) for part in encoded):
            return {"BS": [base64.b64decode(part) for part in encoded]}
    return value
