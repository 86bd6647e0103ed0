"""The JWT secret as users store it in Secrets Manager: the plain key, or a console key/value secret."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from roomcast_local.testing import invoke, load_event
from shared.domain.tokens import SECRET_KEY_NAME, MisconfiguredSecret, signing_key
from shared.wiring.settings import settings
from tests.conftest import make_token

KEY = "the-crm-signing-key-with-at-least-32-bytes"
CLAIMS = {"userId": "u-1", "companyId": "acme"}


def test_a_plain_secret_is_the_key_itself() -> None:
    assert signing_key(KEY) == KEY
    assert signing_key("{not json but a key") == "{not json but a key"


def test_a_key_value_secret_gives_the_value_of_its_jwt_key() -> None:
    assert signing_key(json.dumps({SECRET_KEY_NAME: KEY})) == KEY
    assert signing_key(json.dumps({SECRET_KEY_NAME: KEY, "note": "rotated in May"})) == KEY


@pytest.mark.parametrize("pairs", [{"secret": KEY}, {SECRET_KEY_NAME: ""}, {SECRET_KEY_NAME: 7}])
def test_a_key_value_secret_without_the_jwt_key_is_refused_with_what_to_do(pairs: dict[str, Any]) -> None:
    with pytest.raises(MisconfiguredSecret, match=f"under the key {SECRET_KEY_NAME}"):
        signing_key(json.dumps(pairs))


@pytest.fixture
def stored_secret(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Stores a value in Secrets Manager (moto) as the authorizer's JWT_SECRET_ARN."""

    def store(value: str) -> None:
        # A new name each time: Powertools caches secrets by name for five minutes.
        arn = boto3.client("secretsmanager").create_secret(Name=f"roomcast/{uuid.uuid4()}", SecretString=value)["ARN"]
        monkeypatch.setenv("JWT_SECRET_ARN", arn)
        settings.cache_clear()

    monkeypatch.delenv("JWT_SECRET_KEY_CALL")
    yield store
    settings.cache_clear()


def handshake(token: str) -> Any:
    event = copy.deepcopy(load_event("authorizer"))
    event["queryStringParameters"] = {"token": token}
    event.pop("multiValueQueryStringParameters", None)
    return invoke("handlers.authorizer.handler", event)


def effect(policy: dict[str, Any]) -> str:
    return str(policy["policyDocument"]["Statement"][0]["Effect"])


def test_the_authorizer_accepts_tokens_signed_with_a_key_value_secrets_key(stored_secret: Any) -> None:
    stored_secret(json.dumps({SECRET_KEY_NAME: KEY}))
    assert effect(handshake(make_token(CLAIMS, secret=KEY))) == "Allow"
    assert effect(handshake(make_token(CLAIMS, secret=json.dumps({SECRET_KEY_NAME: KEY})))) == "Deny"


def test_the_authorizer_fails_loudly_on_a_key_value_secret_of_another_shape(stored_secret: Any) -> None:
    stored_secret(json.dumps({"jwt": KEY}))
    with pytest.raises(MisconfiguredSecret, match="its keys: \\['jwt'\\]"):
        handshake(make_token(CLAIMS, secret=KEY))
