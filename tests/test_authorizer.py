"""The $connect authorizer: who gets in, who is refused with 401 or 403, and what later routes learn."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import boto3
import jwt
import pytest

from roomcast_local.testing import invoke, load_event
from shared.protocol.identity import identity_from_authorizer
from shared.wiring.settings import settings
from tests.conftest import SECRET, make_token

HANDLER = "handlers.authorizer.handler"


@pytest.fixture(autouse=True)
def tables(aws: None) -> None:
    """The authorizer reads the user's access item (kick and revoke): moto's tables answer."""


def handshake(token: str | None = None, header: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("authorizer"))
    event.pop("queryStringParameters")
    event.pop("multiValueQueryStringParameters")
    if token is not None:
        event["queryStringParameters"] = {"token": token}
    if header is not None:
        event["headers"]["Authorization"] = header
    result: dict[str, Any] = invoke(HANDLER, event)
    return result


def effect(policy: dict[str, Any]) -> str:
    return str(policy["policyDocument"]["Statement"][0]["Effect"])


def test_a_valid_query_token_is_allowed_with_the_identity_as_context() -> None:
    policy = handshake(make_token({"userId": "u-1", "companyId": "acme", "email": "a@acme.example"}))
    assert effect(policy) == "Allow"
    assert policy["principalId"] == "u-1"
    assert policy["context"] == {"userId": "u-1", "companyId": "acme", "email": "a@acme.example"}


def test_a_bearer_header_is_accepted_too() -> None:
    exp = int(time.time()) + 60
    policy = handshake(header="Bearer " + make_token({"userId": "u-2", "companyId": "acme", "exp": exp}))
    assert effect(policy) == "Allow"
    assert policy["context"]["exp"] == exp


def test_no_token_is_401() -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handshake()
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handshake(header="Basic dXNlcjpwYXNz")


NOW = int(time.time())


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            make_token({"userId": "u-1", "companyId": "acme"}, secret="another-secret-of-at-least-32-bytes"),
            id="bad-signature",
        ),
        pytest.param(make_token({"userId": "u-1", "companyId": "acme"}, algorithm="HS512"), id="HS512"),
        pytest.param(jwt.encode({"userId": "u-1", "companyId": "acme"}, key="", algorithm="none"), id="alg-none"),
        pytest.param(make_token({"companyId": "acme"}), id="no-userId"),
        pytest.param(make_token({"userId": "u-1"}), id="no-companyId"),
        pytest.param(make_token({"userId": ["u-1"], "companyId": "acme"}), id="userId-not-an-id"),
        pytest.param(make_token({"userId": "u 1", "companyId": "acme"}), id="userId-bad-characters"),
        pytest.param(make_token({"userId": "u-1", "companyId": "acme", "exp": NOW - 60}), id="expired"),
        # Made at collection: a day ahead stays ahead however slow the run.
        pytest.param(make_token({"userId": "u-1", "companyId": "acme", "nbf": NOW + 86_400}), id="not-yet-valid"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
def test_untrustworthy_tokens_are_denied(token: str) -> None:
    assert effect(handshake(token)) == "Deny"


def test_an_rs256_token_is_denied() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert effect(handshake(jwt.encode({"userId": "u-1", "companyId": "acme"}, key, algorithm="RS256"))) == "Deny"


def test_expiry_and_not_before_have_a_leeway_of_ten_seconds() -> None:
    now = int(time.time())
    assert effect(handshake(make_token({"userId": "u-1", "companyId": "acme", "exp": now - 5}))) == "Allow"
    assert effect(handshake(make_token({"userId": "u-1", "companyId": "acme", "nbf": now + 5}))) == "Allow"
    assert effect(handshake(make_token({"userId": "u-1", "companyId": "acme", "exp": now - 15}))) == "Deny"


def test_in_aws_the_secret_comes_from_secrets_manager(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = boto3.client("secretsmanager").create_secret(
        Name="roomcast/jwt", SecretString="from-secrets-manager-with-32-bytes-or-more"
    )["ARN"]
    monkeypatch.setenv("JWT_SECRET_ARN", arn)
    monkeypatch.delenv("JWT_SECRET_KEY_CALL")
    settings.cache_clear()
    try:
        good = make_token({"userId": "u-1", "companyId": "acme"}, secret="from-secrets-manager-with-32-bytes-or-more")
        assert effect(handshake(good)) == "Allow"
        assert effect(handshake(make_token({"userId": "u-1", "companyId": "acme"}, secret=SECRET))) == "Deny"
    finally:
        settings.cache_clear()


def test_numeric_ids_and_fractional_dates_are_accepted_and_reach_routes_as_api_gateway_passes_them() -> None:
    """RFC 7519 allows a non-integer NumericDate, and the CRM's issuer may send numeric ids."""
    now = time.time()
    claims = {"userId": 42, "companyId": 7, "exp": now + 600.75, "nbf": now - 1.5, "iat": now - 1.25}
    policy = handshake(make_token(claims))
    assert effect(policy) == "Allow"
    assert policy["principalId"] == "42"
    assert policy["context"] == {"userId": "42", "companyId": "7", "exp": math.floor(now + 600.75)}
    # API Gateway hands every authorizer context value to later routes as a string.
    passed_on = {name: str(value) for name, value in policy["context"].items()}
    identity = identity_from_authorizer(passed_on)
    assert (identity.user_id, identity.company_id, identity.exp) == ("42", "7", math.floor(now + 600.75))


@pytest.mark.parametrize("claims", [{"userId": True, "companyId": "acme"}, {"userId": 4.5, "companyId": "acme"}])
def test_ids_that_are_neither_text_nor_integers_are_still_refused(claims: dict[str, Any]) -> None:
    assert effect(handshake(make_token(claims))) == "Deny"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def test_the_access_read_is_tried_three_times_like_every_other_call_then_the_handshake_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The authorizer's client is made with the services' retry configuration: a DynamoDB that keeps answering
    500 costs the handshake three attempts (standard backoff), not the ten botocore's legacy mode gives DynamoDB."""
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    from handlers import authorizer

    attempts: list[str] = []

    def unavailable(request: Any, **_: Any) -> AWSResponse:
        attempts.append(request.url)
        headers: Any = {}
        return AWSResponse(request.url, 500, headers, _Raw(b'{"__type":"InternalServerError","message":"busy"}'))

    authorizer.access_store.cache_clear()
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    boto3.setup_default_session()
    session: Any = boto3.DEFAULT_SESSION
    session.events.register_first("before-send.dynamodb.GetItem", unavailable)
    try:
        with pytest.raises(ClientError):
            handshake(make_token({"userId": "u-1", "companyId": "acme"}))
    finally:
        authorizer.access_store.cache_clear()
        boto3.setup_default_session()
    assert len(attempts) == 3
