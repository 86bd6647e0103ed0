"""The hand-made DynamoDB caller (shared.stores.dynamo_client, decision 0104) against botocore: each operation the
stores make is the request botocore's serializer writes and its SigV4 signer signs, byte for byte; answers and
errors are what botocore's client returns and raises; throttling and 5xx are retried by the client's own
standard-mode handler; and over real HTTP the calls share one kept-alive connection."""

from __future__ import annotations

import datetime
import gc
import hashlib
import http.server
import json
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar
from unittest import mock

import boto3
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse, prepare_request_dict
from botocore.config import Config
from botocore.credentials import CredentialResolver, Credentials

from shared.stores.dynamo import Table, json_client, serialize
from shared.stores.dynamo_client import JsonClient
from tests.faults import FaultInjector

MOMENT = datetime.datetime(2026, 12, 1, 23, 59, 58, tzinfo=datetime.UTC)
TABLE = "test-client"
KEY = {"pk": {"S": "conv#acme#c-1"}, "sk": {"S": "#conversation"}}
# One call of each operation the stores make, as shared.stores.dynamo hands it over (already DynamoDB JSON).
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"TableName": TABLE, "Key": KEY, "ConsistentRead": True}),
    (
        "PutItem",
        {
            "TableName": TABLE,
            "Item": serialize({"pk": "p", "sk": "s", "n": 3, "b": b"\x00\xff", "set": {b"a", b"b"}, "t": 'hé"\\'}),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": "SET #s = #s + :one",
            "ExpressionAttributeNames": {"#s": "seq"},
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "UPDATED_NEW",
        },
    ),
    ("DeleteItem", {"TableName": TABLE, "Key": KEY}),
    (
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "#n0 = :v0",
            "ExpressionAttributeNames": {"#n0": "pk"},
            "ExpressionAttributeValues": {":v0": {"S": "room#acme#r"}},
            "Limit": 100,
            "ScanIndexForward": False,
        },
    ),
    (
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": serialize({"pk": "a", "sk": "b"})}},
                {"Delete": {"TableName": TABLE, "Key": KEY, "ConditionExpression": "attribute_exists(pk)"}},
            ]
        },
    ),
    ("BatchWriteItem", {"RequestItems": {TABLE: [{"PutRequest": {"Item": serialize({"pk": "a", "sk": "c"})}}]}}),
    ("BatchGetItem", {"RequestItems": {TABLE: {"Keys": [KEY], "ConsistentRead": True}}}),
    (  # awkward values: names and text beyond ASCII, empty ones, every byte, a body near DynamoDB's item limit
        "PutItem",
        {
            "TableName": TABLE,
            "Item": serialize(
                {"pk": "ключ", "sk": "", "名前": "💬\u2028\x00", "b": bytes(range(256)), "big": "x" * 390_000}
            ),
        },
    ),
]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _client(token: str | None, endpoint: str | None = None, **config: Any) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        region_name="eu-west-1",
    )
    return session.client("dynamodb", endpoint_url=endpoint, config=Config(user_agent="roomcast-test", **config))


def _captured(client: Any, operation: str, params: dict[str, Any]) -> Any:
    """The request the hand-made caller sends for one call, answered `{}` before it leaves."""
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        headers: Any = {}
        return AWSResponse(request.url, 200, headers, _Raw(b"{}"))

    client.meta.events.register_first(f"before-send.dynamodb.{operation}", capture)
    gmtime = time.gmtime
    with mock.patch("time.gmtime", lambda at=None: gmtime(MOMENT.timestamp() if at is None else at)):
        JsonClient(client).call(operation, params)
    return sent[0]


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEBY//token+with/=="])
@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:4566", "http://127.0.0.1:4566/dynamodb"])
@pytest.mark.parametrize(("operation", "params"), CALLS, ids=[operation for operation, _ in CALLS])
def test_each_request_is_botocores_serialized_and_signed_byte_for_byte(
    operation: str, params: dict[str, Any], token: str | None, endpoint: str | None
) -> None:
    client = _client(token, endpoint)
    request = _captured(client, operation, params)
    # botocore's serializer: the same body, target and content type.
    expected = client._serializer.serialize_to_request(params, client.meta.service_model.operation_model(operation))
    assert request.body == expected["body"]
    prepare_request_dict(expected, endpoint_url=client.meta.endpoint_url)  # botocore's URL for the call
    assert request.url == expected["url"]
    for name in ("X-Amz-Target", "Content-Type"):
        assert request.headers[name] == expected["headers"][name]
    # botocore's signer, over the same headers at the same moment: the same canonical request and signature.
    unsigned = {name: value for name, value in request.headers.items() if name not in ("Authorization", "X-Amz-Date")}
    unsigned.pop("X-Amz-Security-Token", None)
    theirs = AWSRequest(method="POST", url=expected["url"], headers=unsigned, data=expected["body"])
    signer = SigV4Auth(client._request_signer._credentials.get_frozen_credentials(), "dynamodb", "eu-west-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=MOMENT.replace(tzinfo=None)):
        signer.add_auth(theirs)
    signed = AWSRequest(method="POST", url=expected["url"], headers=dict(theirs.headers.items()), data=expected["body"])
    del signed.headers["Authorization"]  # the canonical request botocore signed: its headers before the signature
    *_, signed_headers, payload_hash = signer.canonical_request(signed).split("\n")
    token_header = "" if token is None else "x-amz-security-token;"
    assert signed_headers == f"content-type;host;x-amz-date;{token_header}x-amz-target"
    assert payload_hash == hashlib.sha256(request.body).hexdigest()
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        assert request.headers.get(name) == theirs.headers.get(name)
    assert request.headers["User-Agent"] == client.meta.config.user_agent  # as configured (a fixed one: decision 0076)


def _without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in answer.items() if name != "ResponseMetadata"}


@pytest.fixture
def table(aws: None) -> tuple[Any, Table]:
    """A table under moto, and botocore's client and a Table on it."""
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return client, Table(client, TABLE)


def test_answers_are_botocores_binary_values_included(table: tuple[Any, Table]) -> None:
    client, ours = table
    item = serialize({"pk": "p", "sk": "s", "b": b"\x00\xff", "bs": {b"x", b"y"}, "B": {"S": "a map"}, "n": 1})
    client.put_item(TableName=TABLE, Item=item)
    for operation, params in [
        ("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "p"}, "sk": {"S": "s"}}}),
        (
            "Query",
            {
                "TableName": TABLE,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "p"}},
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": TABLE,
                "Key": {"pk": {"S": "p"}, "sk": {"S": "s"}},
                "UpdateExpression": "SET n = n + :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
                "ReturnValues": "ALL_NEW",
            },
        ),
    ]:
        answer = ours.calls.call(operation, params)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert answer["ResponseMetadata"]["RetryAttempts"] == 0
        botocores = getattr(client, botocore.xform_name(operation))(**params)
        if operation == "UpdateItem":  # the same update, once more
            botocores["Attributes"]["n"] = {"N": str(int(botocores["Attributes"]["n"]["N"]) - 1)}
        assert _without_metadata(answer) == _without_metadata(botocores)
    assert ours.get_item(Key={"pk": "p", "sk": "s"})["Item"]["b"] == b"\x00\xff"


def test_a_failed_condition_raises_botocores_error_with_the_old_item(table: tuple[Any, Table]) -> None:
    client, ours = table
    item = serialize({"pk": "p", "sk": "s", "n": 1})
    client.put_item(TableName=TABLE, Item=item)
    put = {
        "TableName": TABLE,
        "Item": item,
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    with pytest.raises(client.exceptions.ConditionalCheckFailedException) as raised:
        ours.calls.call("PutItem", put)
    with pytest.raises(client.exceptions.ConditionalCheckFailedException) as botocores:
        client.put_item(**put)
    assert _without_metadata(raised.value.response) == _without_metadata(botocores.value.response)
    assert raised.value.response["Item"] == item
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raised.value.operation_name == "PutItem"


def test_a_cancelled_transaction_raises_botocores_error_with_its_reasons(table: tuple[Any, Table]) -> None:
    client, ours = table
    client.put_item(TableName=TABLE, Item=serialize({"pk": "p", "sk": "s"}))
    items = [
        {
            "Put": {
                "TableName": TABLE,
                "Item": serialize({"pk": "p", "sk": "s"}),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {"Put": {"TableName": TABLE, "Item": serialize({"pk": "q", "sk": "s"})}},
    ]
    with pytest.raises(client.exceptions.TransactionCanceledException) as raised:
        ours.calls.call("TransactWriteItems", {"TransactItems": items})
    with pytest.raises(client.exceptions.TransactionCanceledException) as botocores:
        client.transact_write_items(TransactItems=items)
    assert _without_metadata(raised.value.response) == _without_metadata(botocores.value.response)
    reasons = raised.value.response["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["ConditionalCheckFailed", "None"]


def test_throttling_is_retried_by_the_clients_handler_then_raised(aws: None) -> None:
    session = boto3.session.Session()
    faults = FaultInjector(session)  # before the client: it copies the session's hooks
    client = session.client("dynamodb", config=Config(retries={"mode": "standard", "total_max_attempts": 3}))
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table = Table(client, TABLE)
    faults.fail("PutItem", times=2)
    answer = table.put_item(Item={"pk": "p"})
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert faults.injected["PutItem"] == 2
    assert table.get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}
    faults.fail("GetItem", times=3, status=500, code="InternalServerError")
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        table.get_item(Key={"pk": "p"})
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    metadata: Any = raised.value.response["ResponseMetadata"]
    assert metadata["MaxAttemptsReached"] is True
    assert faults.injected["GetItem"] == 3


def test_every_table_over_one_client_shares_its_caller(aws: None) -> None:
    client = boto3.client("dynamodb")
    assert Table(client, "a").calls is Table(client, "b").calls is json_client(client)
    assert json_client(boto3.client("dynamodb")) is not json_client(client)


class _Stub(http.server.BaseHTTPRequestHandler):
    """DynamoDB over HTTP/1.1: answers from a script, then GetItem's item; counts connections and requests."""

    protocol_version = "HTTP/1.1"
    script: ClassVar[list[tuple[int, dict[str, Any]]]] = []
    requests: ClassVar[list[dict[str, str]]] = []
    connections: ClassVar[set[int]] = set()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({**dict(self.headers.items()), "path": self.path})
        type(self).connections.add(id(self.connection))
        status, answer = self.script.pop(0) if self.script else (200, {"Item": {"pk": {"S": "p"}, "n": {"N": "1"}}})
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-RequestId", "r-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def stub() -> Iterator[str]:
    _Stub.script, _Stub.requests, _Stub.connections = [], [], set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_over_http_calls_share_a_kept_alive_connection_and_5xx_and_throttling_are_retried(stub: str) -> None:
    client = _client(None, stub, retries={"mode": "standard", "total_max_attempts": 3})
    table = Table(client, TABLE)
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow down"}
    _Stub.script = [(503, {"message": "unavailable"}), (400, throttled)]
    assert table.get_item(Key={"pk": "p"})["Item"] == {"pk": "p", "n": Decimal(1)}
    for _ in range(3):
        table.get_item(Key={"pk": "p"})
    assert len(_Stub.requests) == 6
    assert len(_Stub.connections) == 1
    assert all(headers["X-Amz-Target"] == "DynamoDB_20120810.GetItem" for headers in _Stub.requests)
    assert {headers["Host"] for headers in _Stub.requests} == {stub.removeprefix("http://")}
    _Stub.script = [(400, {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException", "message": "bad"})]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        table.get_item(Key={"pk": "p"})
    assert raised.value.response["Error"] == {"Code": "ValidationException", "Message": "bad"}
    assert len(_Stub.requests) == 7  # not retried


def test_a_refused_connection_is_botocores_error_after_the_retries() -> None:
    client = _client(None, "http://127.0.0.1:9", retries={"mode": "standard", "total_max_attempts": 2})
    failures: list[Any] = []
    client.meta.events.register("after-call-error.dynamodb", lambda exception, **_: failures.append(exception))
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        Table(client, TABLE).get_item(Key={"pk": "p"})
    assert len(failures) == 1


def test_credentials_are_read_at_each_call(stub: str) -> None:
    client = _client(None, stub)
    table = Table(client, TABLE)
    table.get_item(Key={"pk": "p"})
    rotated = Credentials("AKIDROTATED", "secret", "token").get_frozen_credentials
    with mock.patch.object(client._request_signer._credentials, "get_frozen_credentials", rotated):
        table.get_item(Key={"pk": "p"})
    assert "Credential=AKIDEXAMPLE/" in _Stub.requests[0]["Authorization"]
    assert "Credential=AKIDROTATED/" in _Stub.requests[1]["Authorization"]
    assert _Stub.requests[1]["X-Amz-Security-Token"] == "token"


def test_a_client_under_tables_is_freed_with_its_pool_once_unused() -> None:
    """The cache of callers is weak: a caller must not keep its own client (and pool, and sockets) alive."""
    client = _client(None)
    Table(client, TABLE).get_item  # noqa: B018  (a Table made, its caller cached)
    freed = weakref.ref(client)
    del client
    gc.collect()
    assert freed() is None


class _Wire(http.server.BaseHTTPRequestHandler):
    """DynamoDB over HTTP/1.1 as the wire can go wrong: each request takes the next step of a script, a body sent
    with the x-amz-crc32 it claims, or a connection dropped (after an answer, or instead of one)."""

    protocol_version = "HTTP/1.1"
    script: ClassVar[list[tuple[str, bytes, int | None]]] = []
    requests: ClassVar[int] = 0
    GOOD: ClassVar[bytes] = json.dumps({"Item": {"pk": {"S": "p"}}}).encode()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests += 1
        step, body, crc = self.script.pop(0) if self.script else ("answer", self.GOOD, None)
        if step == "drop":  # the server closed the kept-alive connection as the request came
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-crc32", str(zlib.crc32(body) if crc is None else crc))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if step == "close":  # an idle connection the server closes without saying so
            self.close_connection = True

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def wire() -> Iterator[str]:
    _Wire.script, _Wire.requests = [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Wire)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_answer_whose_crc32_does_not_match_is_retried_as_botocore_retries_it(wire: str) -> None:
    good = _Wire.GOOD
    for corrupted in (good.replace(b'"p"', b'"q"'), good[:-3] + b"\x00\x00\x00"):  # still JSON, and no longer
        _Wire.script, _Wire.requests = [("answer", corrupted, zlib.crc32(good))], 0
        client = _client(None, wire, retries={"mode": "standard", "total_max_attempts": 3})
        assert Table(client, TABLE).get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}
        assert _Wire.requests == 2
        _Wire.script, _Wire.requests = [("answer", corrupted, zlib.crc32(good))], 0
        botocores = _client(None, wire, retries={"mode": "standard", "total_max_attempts": 3})
        assert botocores.get_item(TableName=TABLE, Key={"pk": {"S": "p"}})["Item"] == {"pk": {"S": "p"}}
        assert _Wire.requests == 2


def test_a_kept_alive_connection_the_server_closed_is_not_surfaced(wire: str) -> None:
    client = _client(None, wire, retries={"mode": "standard", "total_max_attempts": 3})
    table = Table(client, TABLE)
    _Wire.script = [("close", _Wire.GOOD, None)]
    table.get_item(Key={"pk": "p"})
    assert table.get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}  # the closed one noticed before it is used
    _Wire.script, _Wire.requests = [("drop", b"", None)], 0
    # Closed as the call came (the keep-alive race): sent again once on a new connection by the transport
    # (decision 0105), unseen by the retry handler and its quota.
    assert table.get_item(Key={"pk": "p"})["ResponseMetadata"]["RetryAttempts"] == 0
    assert _Wire.requests == 2
    # A new connection dropped without an answer is the retry handler's, as botocore's.
    _Wire.script, _Wire.requests = [("drop", b"", None)], 0
    fresh = Table(_client(None, wire, retries={"mode": "standard", "total_max_attempts": 3}), TABLE)
    assert fresh.get_item(Key={"pk": "p"})["ResponseMetadata"]["RetryAttempts"] == 1
    assert _Wire.requests == 2


def test_no_credentials_is_botocores_error() -> None:
    session = boto3.session.Session(region_name="eu-west-1")
    session._session.register_component("credential_provider", CredentialResolver([]))
    client = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(botocore.exceptions.NoCredentialsError):
        Table(client, TABLE).get_item(Key={"pk": "p"})


@pytest.mark.parametrize("verify", [True, False, "/etc/ssl/roomcast-ca.pem"])
def test_tls_is_verified_as_the_client_is_configured(verify: Any) -> None:
    """`verify=` (or AWS_CA_BUNDLE) is the client's: a private CA bundle, or none (tests/test_dynamo_http.py
    checks it against a local TLS server)."""
    session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1")
    transport = JsonClient(session.client("dynamodb", verify=verify))._transport
    assert transport.verify == verify


def test_an_endpoint_with_a_path_is_posted_to_where_botocore_posts_and_signs(stub: str) -> None:
    """A local endpoint behind a prefix (a proxy's path): the request goes to that path, as botocore's, signed."""
    client = _client(None, stub + "/dynamodb")
    Table(client, TABLE).get_item(Key={"pk": "p"})
    client.get_item(TableName=TABLE, Key={"pk": {"S": "p"}})
    ours, botocores = _Stub.requests
    assert ours["path"] == botocores["path"] == "/dynamodb"
