"""The console's server side (local/roomcast_local/console.py) without a browser: the token endpoint's checks,
what it serves beside the WebSocket API, and that none of it can reach a Lambda package."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from roomcast_local.console import PAGES, Console, TokenRequest, TokenRequestError, token_request
from roomcast_local.template import load_template
from shared.domain.tokens import verify_token

ROOT = Path(__file__).resolve().parents[1]
SECRET = "a-secret-of-this-test-long-enough-for-hs256"


def test_a_choice_of_company_and_user_with_the_default_lifetime() -> None:
    assert token_request({"userId": "ana", "companyId": "acme"}) == TokenRequest("ana", "acme", 3600)
    assert token_request({"userId": "u:1", "companyId": "co_2.x", "expiresIn": 1}).expires_in == 1


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (["ana", "acme"], "JSON object"),
        ({"userId": "ana", "companyId": "acme", "role": "admin"}, "unknown fields: role"),
        ({"companyId": "acme"}, "userId"),
        ({"userId": "ana b", "companyId": "acme"}, "userId"),
        # `$` matches before a final newline; the authorizer's check does not, and would refuse the token.
        ({"userId": "ana\n", "companyId": "acme"}, "userId"),
        ({"userId": "ana", "companyId": "x" * 129}, "companyId"),
        ({"userId": 7, "companyId": "acme"}, "userId"),
        ({"userId": "ana", "companyId": "acme", "expiresIn": 0}, "expiresIn"),
        ({"userId": "ana", "companyId": "acme", "expiresIn": 86401}, "expiresIn"),
        ({"userId": "ana", "companyId": "acme", "expiresIn": 1.5}, "expiresIn"),
        ({"userId": "ana", "companyId": "acme", "expiresIn": True}, "expiresIn"),
    ],
)
def test_a_bad_choice_is_explained(body: Any, complaint: str) -> None:
    with pytest.raises(TokenRequestError, match=complaint):
        token_request(body)


async def _websocket_api(request: web.Request) -> web.Response:
    """Stands for the stack's WebSocket endpoint: says who answered."""
    return web.Response(status=426 if request.headers.get("Upgrade") != "websocket" else 299, text="websocket api")


def _against_console(check: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def run() -> None:
        app = web.Application()
        Console(SECRET).routes(app, _websocket_api)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(run())


def test_the_endpoint_mints_a_token_the_authorizer_accepts_with_the_stacks_secret() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/console/token", json={"userId": "ana", "companyId": "acme", "expiresIn": 60})
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        identity = verify_token((await response.json())["token"], SECRET, 0)
        assert (identity.user_id, identity.company_id) == ("ana", "acme")

    _against_console(check)


def test_the_endpoint_refuses_what_is_not_a_json_choice_with_the_protocols_error_shape() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        # A form post is what another site could send without a preflight: refused.
        form = await client.post("/console/token", data={"userId": "ana", "companyId": "acme"})
        assert form.status == 415
        garbage = await client.post("/console/token", data=b"{", headers={"Content-Type": "application/json"})
        assert garbage.status == 400
        assert (await garbage.json())["error"] == {"code": "bad_request", "message": "the body is not JSON"}
        bad = await client.post("/console/token", json={"userId": "", "companyId": "acme"})
        assert (await bad.json())["error"]["code"] == "bad_request"
        # No CORS header: another origin's script cannot read a token.
        assert "Access-Control-Allow-Origin" not in bad.headers

    _against_console(check)


def test_only_a_host_naming_this_machine_gets_a_token() -> None:
    """DNS rebinding: a hostile site's name turned to 127.0.0.1 makes its page same-origin with the stack, so no
    preflight stops its post and it reads the answer; the Host header still carries the site's name."""

    async def check(client: TestClient[Any, Any]) -> None:
        choice = {"userId": "ana", "companyId": "acme"}
        for host in ("127.0.0.1:3001", "localhost:3001", "[::1]:3001", "192.168.1.5:3001"):
            assert (await client.post("/console/token", json=choice, headers={"Host": host})).status == 200, host
        for host in ("rebound.example:3001", "127.0.0.1.rebound.example", "localhost.rebound.example:3001"):
            refused = await client.post("/console/token", json=choice, headers={"Host": host})
            assert refused.status == 403, host
            assert (await refused.json())["error"]["code"] == "forbidden"

    _against_console(check)


def test_plain_gets_of_the_console_and_upgrades_everywhere_else() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        page = await client.get("/")
        assert page.status == 200
        assert "socket.io.min.js" in await page.text()
        for path in ("/console/console.js", "/console/console.css"):
            assert (await client.get(path)).status == 200
        # `/` is also where native clients upgrade; other paths stay the WebSocket API's.
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
        assert (await client.get("/", headers=upgrade)).status == 299
        assert (await client.get("/console/console.js", headers=upgrade)).status == 299
        assert (await client.get("/socket.io/")).status == 426
        assert (await client.get("/console/secrets.txt")).status == 426

    _against_console(check)


def test_the_console_is_in_no_lambda_package() -> None:
    template = load_template()
    uris = {template["Globals"]["Function"]["CodeUri"]}
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        uris |= {properties[key] for key in ("CodeUri", "ContentUri") if key in properties}
    assert uris == {"src/", "layer/", "layer-tracing/"}
    for uri in uris:
        packaged = {path.relative_to(ROOT).as_posix() for path in (ROOT / uri).rglob("*") if path.is_file()}
        assert not {path for path in packaged if Path(path).suffix in {".html", ".css", ".js"}}
        assert not {path for path in packaged if "console" in path}
    assert PAGES.is_relative_to(ROOT / "local")
    assert "playwright" not in (ROOT / "layer" / "requirements.txt").read_text()
