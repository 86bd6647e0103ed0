"""The `@connections` signer (shared.protocol.signing, decision 0075) against botocore's own SigV4 signer: the
same request at the same moment gets the same headers, byte for byte; the day's key is derived once; rotated
credentials sign the next batch; and a real server that checks signatures with botocore accepts what is sent."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast_local.environment import Credentials as LocalCredentials
from roomcast_local.sigv4 import Request, SignatureError, signer_of
from shared.delivery.management_api import Delivery, ManagementApi, _encoded_id
from shared.protocol import signing
from shared.protocol.signing import PostSigner

ENDPOINTS = (
    "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
    "http://127.0.0.1:3001/local",
    "https://ws.example.com:8443/v1/",
    "http://localhost:80/prod",
)
MOMENT = datetime.datetime(2026, 12, 1, 23, 59, 58, tzinfo=datetime.UTC)


def botocore_headers(
    url: str, data: bytes, credentials: Credentials, region: str, moment: datetime.datetime
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=data)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def ours(
    endpoint: str, connection_id: str, data: bytes, credentials: Credentials, region: str, moment: datetime.datetime
) -> tuple[str, dict[str, str]]:
    path = f"/@connections/{_encoded_id(connection_id)}"
    headers = (
        PostSigner(endpoint, credentials, region)
        .batch()
        .headers(path, hashlib.sha256(data).hexdigest(), moment.timestamp())
    )
    return endpoint.rstrip("/") + path, headers


connection_ids = st.one_of(
    st.sampled_from(["Fv3sZeKkoAMCL4Q=", "a/b", ".", "..", "...", "~x", "a b", "é", "%41", "", "a+b=="]),
    st.text(min_size=0, max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    connection_id=connection_ids,
    data=st.binary(max_size=200),
    token=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1)),
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]),
    seconds=st.integers(min_value=0, max_value=10**9),
)
def test_the_headers_are_botocores_byte_for_byte(
    endpoint: str, connection_id: str, data: bytes, token: str | None, region: str, seconds: int
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    moment = MOMENT + datetime.timedelta(seconds=seconds)
    url, headers = ours(endpoint, connection_id, data, credentials, region, moment)
    assert headers == botocore_headers(url, data, credentials, region, moment)


def test_the_signing_key_is_derived_once_a_day_and_again_for_a_new_secret() -> None:
    credentials = Credentials("AKID", "secret-1", "token-1")
    signer = PostSigner(ENDPOINTS[0], credentials, "us-east-1")
    derived: list[str] = []
    real = signing._hmac

    def counting(key: bytes, text: str) -> bytes:
        if key.startswith(b"AWS4"):
            derived.append(text)
        return real(key, text)

    with mock.patch.object(signing, "_hmac", counting):
        batch = signer.batch()
        for second in range(100):  # a day's last posts, then the next day's
            batch.headers("/@connections/x", "00", (MOMENT + datetime.timedelta(seconds=second)).timestamp())
        assert derived == ["20261201", "20261202"]
        credentials.secret_key = "secret-2"  # what a refresh of a role's credentials does
        signer.batch().headers("/@connections/x", "00", MOMENT.timestamp())
    assert derived == ["20261201", "20261202", "20261201"]


def test_refreshed_credentials_sign_the_next_batch() -> None:
    def issued(access_key: str, secret_key: str, token: str) -> dict[str, str]:
        expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=3)).isoformat()
        return {"access_key": access_key, "secret_key": secret_key, "token": token, "expiry_time": expiry}

    now = [datetime.datetime.now(datetime.UTC)]
    credentials = RefreshableCredentials(
        "AKID1",
        "secret-1",
        "token-1",
        now[0] + datetime.timedelta(hours=1),
        lambda: issued("AKID2", "secret-2", "token-2"),
        "test",
        time_fetcher=lambda: now[0],
    )
    signer = PostSigner(ENDPOINTS[0], credentials, "us-east-1")
    empty = hashlib.sha256(b"").hexdigest()
    first = signer.batch().headers("/@connections/x", empty, MOMENT.timestamp())
    # Two hours on, the first credentials have expired: botocore refreshes them, and the next batch uses the new.
    now[0] += datetime.timedelta(hours=2)
    second = signer.batch().headers("/@connections/x", empty, MOMENT.timestamp())
    assert first["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID1/")
    assert first["X-Amz-Security-Token"] == "token-1"
    assert second["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID2/")
    assert second["X-Amz-Security-Token"] == "token-2"
    url = ENDPOINTS[0] + "/@connections/x"
    assert second == botocore_headers(url, b"", Credentials("AKID2", "secret-2", "token-2"), "us-east-1", MOMENT)


class Checking:
    """A `@connections` server that checks each post's signature with the local stack's verifier (botocore's
    signer): 200 when it holds, 403 otherwise."""

    def __init__(self, credentials: LocalCredentials) -> None:
        self.known = {credentials.access_key_id: credentials}
        self.refused: list[str] = []

    def accepts(self, request: Request) -> bool:
        try:
            signer_of(request, "execute-api", self.known)
        except SignatureError as error:
            self.refused.append(error.code)
            return False
        return True


@pytest.fixture
def checking_server() -> Iterator[tuple[str, Checking, LocalCredentials]]:
    import asyncio
    import threading

    from aiohttp import web

    credentials = LocalCredentials("AKIDLOCAL", "local-secret", "local-token")
    checker = Checking(credentials)

    async def handle(request: web.Request) -> web.Response:
        # As the local stack reads a request (roomcast_local.callers): the raw path, as signed.
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        signed = Request(request.method, url, request.headers, await request.read())
        return web.Response(status=200 if checker.accepts(signed) else 403)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/prod", checker, credentials
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_a_server_checking_with_botocore_accepts_every_post(
    checking_server: tuple[str, Checking, LocalCredentials],
) -> None:
    url, checker, local = checking_server
    session = boto3.session.Session(
        aws_access_key_id=local.access_key_id,
        aws_secret_access_key=local.secret_access_key,
        aws_session_token=local.session_token,
        region_name="us-east-1",
    )
    credentials = session.get_credentials()
    assert credentials is not None
    client = session.client("apigatewaymanagementapi", endpoint_url=url)
    sender = ManagementApi(url, "us-east-1", credentials, 8, client)
    try:
        ids = ["Fv3sZeKkoAMCL4Q=", "a/b", "..", "sp ace", "é"]
        assert sender.post_many(ids, b'{"event":"pong"}') == [Delivery.DELIVERED] * len(ids)
        assert checker.refused == []
        credentials.secret_key = "wrong"  # a signer that signs with another key is refused: the check is real
        assert sender.post_many(["x"], b"{}") == [Delivery.FAILED]
        assert checker.refused == ["InvalidSignatureException"]
    finally:
        sender.shutdown()


def test_a_key_derived_by_another_thread_between_the_check_and_the_read_is_not_returned() -> None:
    """Batches of one signer sign on several threads at once (a fan-out, a send's reads): while one thread checks
    the cached key is its secret's and its day's, another may replace it with a rotated secret's or the next day's
    key. The first must still sign with its own, never with the key the other cached."""
    signer = PostSigner(ENDPOINTS[0], Credentials("AKID", "old-secret"), "us-east-1")
    mine = signer.signing_key("old-secret", "20261201")
    theirs = PostSigner(ENDPOINTS[0], Credentials("AKID", "new-secret"), "us-east-1").signing_key(
        "new-secret", "20261201"
    )

    class Interleaved(tuple):  # type: ignore[type-arg]
        """The cached key, read by this thread's check while the other thread caches a rotated secret's key."""

        def __getitem__(self, index: Any) -> Any:
            if index == 1:
                signer.signing_key("new-secret", "20261201")
            return super().__getitem__(index)

    signer._key = Interleaved(signer._key)  # type: ignore[arg-type]
    assert signer.signing_key("old-secret", "20261201") == mine != theirs
