"""The browser console of the local stack (docs/console.md): its page, its static files, socket.io-client's browser
bundle from node_modules, and the development token endpoint. None of it exists in AWS (decision 0040)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from yarl import URL

from roomcast_local.environment import mint_token
from shared.protocol.ids import ID_PATTERN

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "local" / "console"
# Taken from the npm package `make install` puts in place (package-lock.json's version): no CDN, no network.
SOCKET_IO = ROOT / "node_modules" / "socket.io-client" / "dist"
TOKEN_PATH = "/console/token"
MAX_LIFETIME = 24 * 3600
_ID = re.compile(ID_PATTERN)
# What the page may fetch; anything else is the WebSocket API's (or not found).
_FILES = {
    "/": PAGES / "index.html",
    "/console/console.js": PAGES / "console.js",
    "/console/console.css": PAGES / "console.css",
    "/console/socket.io.min.js": SOCKET_IO / "socket.io.min.js",
    "/console/socket.io.min.js.map": SOCKET_IO / "socket.io.min.js.map",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenRequestError(ValueError):
    pass


@dataclass(frozen=True)
class TokenRequest:
    user_id: str
    company_id: str
    expires_in: int


def token_request(body: Any) -> TokenRequest:
    """The page's choice of identity, checked as the authorizer would check the token's claims, so that a bad
    choice is explained here rather than as a refused handshake the browser cannot read."""
    if not isinstance(body, dict):
        raise TokenRequestError("the body must be a JSON object")
    unknown = set(body) - {"userId", "companyId", "expiresIn"}
    if unknown:
        raise TokenRequestError(f"unknown fields: {', '.join(sorted(unknown))}")
    ids = {name: body.get(name) for name in ("userId", "companyId")}
    for name, value in ids.items():
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise TokenRequestError(f"{name} must be 1 to 128 characters of A-Z a-z 0-9 _ . : -")
    expires_in = body.get("expiresIn", 3600)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_LIFETIME:
        raise TokenRequestError(f"expiresIn must be whole seconds from 1 to {MAX_LIFETIME}")
    return TokenRequest(str(ids["userId"]), str(ids["companyId"]), expires_in)


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


class Console:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def routes(self, app: web.Application, websocket: Handler) -> None:
        """Plain GETs of the console's files; every upgrade, on any path (`/` included), is the WebSocket API's."""
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get("/{path:.*}", self._or_websocket(websocket))

    def _or_websocket(self, websocket: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            page = _FILES.get(request.path)
            if page is None or is_upgrade(request):
                return await websocket(request)
            if not page.is_file():
                return web.Response(status=404, text=f"{page.name} is missing: run `make install`\n")
            # The page is the developer's working copy: always the one on disk.
            return web.FileResponse(page, headers={"Cache-Control": "no-store"})

        return handle

    async def _token(self, request: web.Request) -> web.Response:
        # A site whose name its DNS turns to this machine's address (DNS rebinding) is the page's own origin to the
        # browser, CORS or not: only a Host naming the stack by address or as localhost gets a token.
        if not _names_this_machine(request.host):
            return _refusal(403, "open the console at its address (http://127.0.0.1:PORT/) or localhost", "forbidden")
        # JSON only, and no CORS headers: another site's page cannot send this without a preflight it would fail,
        # nor read the answer, so only the console's own origin gets a token (decision 0040).
        if request.content_type != "application/json":
            return _refusal(415, "send the choice as application/json")
        try:
            choice = token_request(json.loads(await request.read()))
        except ValueError as error:  # TokenRequestError, or a body that is not JSON
            return _refusal(400, str(error) if isinstance(error, TokenRequestError) else "the body is not JSON")
        token = mint_token(choice.user_id, choice.company_id, None, choice.expires_in, self.secret)
        return web.json_response({"token": token}, headers={"Cache-Control": "no-store"})


def _names_this_machine(host: str) -> bool:
    try:
        name = URL(f"http://{host}").host or ""
        if name.lower() != "localhost":
            ipaddress.ip_address(name)
    except ValueError:  # a Host that is no host, or a name other than localhost
        return False
    return True


def _refusal(status: int, message: str, code: str = "bad_request") -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
