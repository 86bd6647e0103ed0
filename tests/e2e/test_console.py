"""The browser console (issue 13) in Debian's headless Chromium, driven by Playwright, against `roomcast serve`:
what a developer sees at http://127.0.0.1:3001/ when two agents of one company chat and a third company watches.

One stack (on a DynamoDB that outlives it, so a restart keeps the data) and one browser for the whole module; the
tests run in file order on one xdist worker (`xdist_group`), each in conversations of its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect

from roomcast_local import cli
from roomcast_local.environment import DEVELOPMENT_SECRET, mint_token
from roomcast_local.testing import RunningStack, start_stack, stop_stack
from tests.e2e.client import company

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("console")]
CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make install`; Playwright downloads nothing
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "console.png"
LEEWAY = 10  # seconds past `exp` a token is still honoured (docs/protocol.md, Connecting)
STALE_LIFETIME = 1
PING_INTERVAL = 3
# Generous: on a busy 2-core machine a cold function takes seconds; a passing run never waits this long.
expect.set_options(timeout=20_000)
FIRST_CONNECTION_MS = 60_000  # the first handshake starts the authorizer's, $connect's and the deferred's workers


class Stack:
    """`roomcast serve` on one port across restarts, on a DynamoDB of its own that outlives each run."""

    # A heartbeat every few seconds: a pong after the token has expired is answered by closing (docs/socketio.md).
    options = ("--ping-interval", str(PING_INTERVAL))

    def __init__(self) -> None:
        self._storage = subprocess.Popen(
            [sys.executable, "-m", "roomcast_local.storage"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._storage.stdout is not None
        self.dynamodb = self._storage.stdout.readline().strip()
        self.running: RunningStack = start_stack(*self.options, dynamodb=self.dynamodb)
        self.url = self.running.http_url

    def restart(self) -> None:
        assert stop_stack(self.running) == 0
        port = self.url.rsplit(":", 1)[1]
        self.running = start_stack(*self.options, "--port", port, dynamodb=self.dynamodb)

    def stop(self) -> None:
        stop_stack(self.running)
        assert self._storage.stdin is not None
        self._storage.stdin.close()  # the storage process serves until its stdin closes
        try:
            self._storage.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # moto's server can take longer than that to stop on a loaded machine; its data is not needed now.
            self._storage.kill()
            self._storage.wait()


@dataclass
class Agent:
    """One person at the console, in a browser context of their own (own storage, own connection)."""

    context: BrowserContext
    page: Page
    user: str
    company: str
    signed_in_at: float = 0.0

    def sign_in(self, lifetime: int = 3600, recovery: bool = False) -> None:
        self.signed_in_at = time.time()
        self.page.fill("#sign-in [name=company]", self.company)
        self.page.fill("#sign-in [name=user]", self.user)
        self.page.fill("#sign-in [name=lifetime]", str(lifetime))
        self.page.set_checked("#sign-in [name=recovery]", recovery)
        self.page.click("#sign-in button")
        expect(self.page.locator("#status")).to_have_text("connected", timeout=FIRST_CONNECTION_MS)

    def create(self, subject: str) -> str:
        self.page.fill("#create [name=subject]", subject)
        self.page.click("#create button")
        item = self.page.locator("#conversations li", has_text=subject)
        expect(item).to_have_class("open")
        expect(self.page.locator("#conversation-subject")).to_have_text(subject)
        expect(self.page.locator("#conversation")).to_have_attribute("data-state", "joined")
        conversation_id = item.get_attribute("data-id")
        assert conversation_id is not None
        return conversation_id

    def open(self, subject: str) -> None:
        self.page.locator("#conversations li button", has_text=subject).click()
        expect(self.page.locator("#conversation-subject")).to_have_text(subject)
        expect(self.page.locator("#conversation")).to_have_attribute("data-state", "joined")

    def send(self, content: str) -> None:
        self.page.fill("#composer textarea", content)
        self.page.click("#composer button")

    def message(self, text: str) -> Any:
        return self.page.locator("#messages li", has_text=text)

    def error(self, code: str) -> Any:
        return self.page.locator(f'#errors .error[data-code="{code}"]')

    def figure(self, name: str) -> str:
        return self.page.locator(f'[data-figure="{name}"]').inner_text()


class Native:
    """A native-frame client (docs/protocol.md, Frames) outside the browser: the other side of a conversation, or
    its past."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    def ok(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        ack_id = uuid.uuid4().hex[:8]
        self.connection.send(json.dumps({"action": action, "data": data, "ackId": ack_id}))
        while True:
            frame = json.loads(self.connection.recv(timeout=30))
            if frame.get("event") == "ack" and frame["ackId"] == ack_id:
                assert frame["ok"] is True, frame
                result: dict[str, Any] = frame["data"]
                return result


@contextmanager
def native(stack: Stack, user: str, company_id: str) -> Iterator[Native]:
    token = mint_token(user, company_id, None, 3600, DEVELOPMENT_SECRET)
    with connect(f"{stack.running.ws_url}?token={token}", open_timeout=FIRST_CONNECTION_MS / 1000) as connection:
        yield Native(connection)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def people(stack: Stack, browser: Browser) -> Iterator[dict[str, Agent]]:
    """ana and ben of one company, cy of another, and `stale` of a third with a 1-second token, signed in first:
    the server closes its connections for expiry while the other tests run."""
    # Plain company names (the picture shows them): this module's DynamoDB is its own.
    agents: dict[str, Agent] = {}
    for user, company_id in (("stale", "initech"), ("ana", "acme"), ("ben", "acme"), ("cy", "globex")):
        context = browser.new_context(viewport={"width": 1280, "height": 760})
        page = context.new_page()
        page.goto(stack.url)
        agents[user] = Agent(context, page, user, company_id)
    agents["stale"].sign_in(lifetime=STALE_LIFETIME)
    for user in ("ana", "ben", "cy"):
        agents[user].sign_in()
    yield agents
    for agent in agents.values():
        agent.context.close()


def test_the_page_and_the_bundle_are_served_beside_the_websocket_api(stack: Stack, browser: Browser) -> None:
    assert re.search(rf"Console\s+{re.escape(stack.url)}/ ", stack.running.log())
    page = browser.new_page()
    try:
        response = page.goto(stack.url)
        assert response is not None
        assert response.ok
        expect(page).to_have_title("roomcast console")
        # socket.io-client's bundle, from node_modules, is what the page speaks with.
        assert page.evaluate("typeof io") == "function"
        bundle = page.request.get(f"{stack.url}/console/socket.io.min.js").body()
        assert bundle == (ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js").read_bytes()
        # A plain GET elsewhere is still the WebSocket API's answer (it needs an upgrade).
        assert page.request.get(f"{stack.url}/local").status == 426
    finally:
        page.close()
    # Upgrades on `/` are still the WebSocket API's.
    with native(stack, "ana", company()) as client:
        assert "timestamp" in client.ok("ping", {})


def test_two_agents_chat_see_typing_and_presence_and_another_company_sees_none_of_it(
    people: dict[str, Agent],
) -> None:
    ana, ben, cy = people["ana"], people["ben"], people["cy"]
    presence = ana.page.locator("#presence li")
    expect(presence).to_have_text(["ana (you)", "ben"])
    expect(ben.page.locator("#presence li")).to_have_text(["ana", "ben (you)"])
    expect(cy.page.locator("#presence li")).to_have_text(["cy (you)"])

    conversation_id = ana.create("Order 42")
    # conversation:updated reaches the company, and only the company.
    expect(ben.page.locator("#conversations li", has_text="Order 42")).to_be_visible()
    ben.open("Order 42")

    ana.page.locator("#composer textarea").press_sequentially("hello b")
    expect(ben.page.locator("#typing")).to_have_text("ana is typing…")
    ana.page.locator("#composer textarea").press("Enter")
    expect(ben.message("hello b")).to_be_visible()
    expect(ana.message("hello b")).to_have_class("own")
    ben.send("hi ana")
    expect(ana.message("hi ana")).to_be_visible()
    expect(ben.page.locator("#typing")).to_have_text("")

    # cy, of another company, heard nothing and cannot open it by its id.
    expect(cy.page.locator("#conversations li")).to_have_count(0)
    cy.page.fill("#open-by-id [name=conversationId]", conversation_id)
    cy.page.click("#open-by-id button")
    expect(cy.error("not_found")).to_be_visible()
    expect(cy.page.locator("#messages li")).to_have_count(0)
    expect(cy.page.locator("#presence li")).to_have_text(["cy (you)"])

    # Presence follows ben out and back.
    ben.page.goto("about:blank")
    expect(presence).to_have_text(["ana (you)"])
    ben.page.goto(ana.page.url)
    ben.sign_in()
    expect(presence).to_have_text(["ana (you)", "ben"])
    # ben's console remembers the company's conversations it heard of.
    ben.open("Order 42")
    expect(ben.message("hello b")).to_be_visible()


def test_own_messages_are_edited_and_deleted_and_status_changes_show_live(people: dict[str, Agent]) -> None:
    ana, ben = people["ana"], people["ben"]
    ana.create("Refund")
    ben.open("Refund")
    ana.send("the first draft")
    expect(ben.message("the first draft")).to_be_visible()
    # Only one's own messages offer edit and delete.
    expect(ben.message("the first draft").locator("button")).to_have_count(0)

    ana.message("the first draft").locator(".message-edit").click()
    ana.page.fill("#messages form.edit input", "the final text")
    ana.page.click("#messages form.edit button")
    expect(ben.message("the final text")).to_contain_text("(edited)")
    ana.message("the final text").locator(".message-delete").click()
    expect(ben.page.locator("#messages li.deleted .content")).to_have_text("message deleted")
    expect(ben.page.locator("#messages li", has_text="the final text")).to_have_count(0)

    ben.page.select_option("#conversation-status", "pending")
    expect(ana.page.locator("#conversation-status")).to_have_value("pending")
    expect(ana.page.locator("#conversations li", has_text="Refund").locator(".badge")).to_have_text("pending")


def test_history_opens_on_the_newest_page_and_pages_back(stack: Stack, people: dict[str, Agent]) -> None:
    ana = people["ana"]
    with native(stack, "bot", ana.company) as bot:
        conversation = bot.ok("conversation:create", {"subject": "Long thread"})["conversation"]
        for number in range(1, 36):
            bot.ok("message:send", {"conversationId": conversation["id"], "content": f"line {number}"})
    ana.open("Long thread")
    messages = ana.page.locator("#messages li")
    expect(messages).to_have_count(30)
    expect(messages.first).to_contain_text("line 6")
    ana.page.click("#older")
    expect(messages).to_have_count(35)
    expect(messages.first).to_contain_text("line 1")
    expect(ana.page.locator("#older")).to_be_hidden()
    seqs = [int(seq) for seq in messages.evaluate_all("items => items.map(item => item.dataset.seq)")]
    assert seqs == list(range(1, 36))


def publish_notify(stack: Stack, agent: Agent, title: str) -> None:
    detail = {"companyId": agent.company, "userId": agent.user, "type": "lead", "title": title, "body": "from a test"}
    assert cli.main(["publish", "Notify", json.dumps(detail), "--endpoint", stack.url]) == 0


def test_a_published_notify_raises_the_badge_and_reading_lowers_it(stack: Stack, people: dict[str, Agent]) -> None:
    ana, ben = people["ana"], people["ben"]
    badge = ana.page.locator("#badge")
    expect(badge).to_be_hidden()
    publish_notify(stack, ana, "New lead: Wayne Enterprises")
    expect(badge).to_have_text("1")
    publish_notify(stack, ana, "New lead: Acme Corp")
    expect(badge).to_have_text("2")
    expect(ben.page.locator("#badge")).to_be_hidden()

    ana.page.click("#bell")
    items = ana.page.locator("#notifications li")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Acme Corp")
    items.first.locator("button").click()
    expect(badge).to_have_text("1")
    expect(ana.page.locator("#notifications li.unread")).to_have_count(1)
    ana.page.click("#all-read")
    expect(badge).to_be_hidden()
    expect(ana.page.locator("#notifications li.unread")).to_have_count(0)
    ana.page.click("#bell")


def test_analytics_tiles_change_after_a_message(people: dict[str, Agent]) -> None:
    ana = people["ana"]
    expect(ana.page.locator('[data-figure="totalConversations"]')).to_have_text(re.compile(r"^\d+$"))
    conversations = int(ana.figure("totalConversations"))
    ana.create("Figures")
    expect(ana.page.locator('[data-figure="totalConversations"]')).to_have_text(str(conversations + 1))
    messages = int(ana.figure("totalMessages"))
    ana.send("one more for the dashboard")
    # metrics:update, pushed to the company's analytics room, not a reload.
    expect(ana.page.locator('[data-figure="totalMessages"]')).to_have_text(str(messages + 1))
    ana.page.click('#periods button[data-period="month"]')
    expect(ana.page.locator('#periods button[data-period="month"]')).to_have_attribute("aria-selected", "true")
    assert int(ana.figure("totalMessages")) >= messages + 1


def test_bad_input_shows_the_servers_error(people: dict[str, Agent]) -> None:
    ana, stale = people["ana"], people["stale"]
    ana.create("Bad input")
    ana.send("")
    expect(ana.error("bad_request")).to_contain_text("message:send")
    ana.send("x" * 20 * 1024)
    expect(ana.error("payload_too_large")).to_contain_text("16384 bytes")
    expect(ana.page.locator("#messages li")).to_have_count(0)

    # stale's token (lifetime 1 s) expires, leeway included: the server closes the connection at its next
    # heartbeat, sending the reason first; the console shows it, then comes back by itself with a fresh token.
    expired_at = stale.signed_in_at + STALE_LIFETIME + LEEWAY
    within = max(0.0, expired_at - time.time()) + PING_INTERVAL + 20
    expect(stale.error("token_expired").first).to_contain_text("connection: token_expired", timeout=within * 1000)
    expect(stale.page.locator("#activity")).to_contain_text("reconnected")
    expect(stale.page.locator("#status")).to_have_text("connected")


def test_with_sessions_on_the_console_recovers_after_a_drop_and_says_so(stack: Stack, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    page = context.new_page()
    page.goto(stack.url)
    dee = Agent(context, page, "dee", "acme")
    dee.sign_in(recovery=True)
    conversation_id = dee.create("Recovered")
    with native(stack, "bot", "acme") as bot:
        # bot's status:online is recorded and posted by another function: heard first, so "while here" cannot
        # overtake it on the way to dee and be replayed again (decision 0109).
        expect(page.locator("#presence li").filter(has_text=re.compile("^bot$"))).to_have_count(1)
        bot.ok("message:send", {"conversationId": conversation_id, "content": "while here"})
        expect(dee.message("while here")).to_be_visible()
        context.set_offline(True)
        expect(page.locator("#status")).not_to_have_text(re.compile("^connected"))
        for content in ("missed one", "missed two"):
            bot.ok("message:send", {"conversationId": conversation_id, "content": content})
        context.set_offline(False)
        expect(page.locator("#status")).to_have_text("connected · recovered", timeout=FIRST_CONNECTION_MS)
        expect(page.locator("#activity")).to_contain_text("session recovered: 2 missed message(s) replayed")
        expect(page.locator("#messages li .content")).to_have_text(["while here", "missed one", "missed two"])
        # The room came back without a join: a later message arrives live.
        bot.ok("message:send", {"conversationId": conversation_id, "content": "later"})
        expect(dee.message("later")).to_be_visible()
    assert "rejoined" not in page.locator("#activity").inner_text()
    context.close()


def test_after_a_stack_restart_the_console_reconnects_and_fills_the_gap(stack: Stack, people: dict[str, Agent]) -> None:
    ana, ben = people["ana"], people["ben"]
    conversation_id = ana.create("Night shift")
    ben.open("Night shift")
    ana.send("before the restart")
    expect(ben.message("before the restart")).to_be_visible()

    # ana's browser goes offline, so what follows is written while she is away, whenever she would reconnect.
    ana.context.set_offline(True)
    expect(ana.page.locator("#status")).not_to_have_text("connected")
    stack.restart()
    with native(stack, "bot", ana.company) as bot:
        for content in ("missed while away", "and this one too"):
            bot.ok("message:send", {"conversationId": conversation_id, "content": content})
    ana.context.set_offline(False)

    expect(ana.page.locator("#status")).to_have_text("connected", timeout=FIRST_CONNECTION_MS)
    expect(ana.page.locator("#activity")).to_contain_text("rejoined; 2 missed message(s) fetched from history")
    expect(ana.page.locator("#messages li .content")).to_have_text(
        ["before the restart", "missed while away", "and this one too"]
    )
    # Live again on the new stack: ben (reconnected too) is heard, typing included.
    expect(ben.page.locator("#status")).to_have_text("connected", timeout=FIRST_CONNECTION_MS)
    ben.send("welcome back")
    expect(ana.message("welcome back")).to_be_visible()
    ben.page.locator("#composer textarea").press_sequentially("are you")
    expect(ana.page.locator("#typing")).to_have_text("ben is typing…")

    # The picture for the README: today's figures, the bell open, no leftover errors of the tests before.
    ana.page.click('#periods button[data-period="today"]')
    dismiss = ana.page.locator("#errors button")
    while dismiss.count():
        dismiss.first.click()
    publish_notify(stack, ana, "Lead assigned: Globex")
    expect(ana.page.locator("#badge")).to_have_text("1")
    ana.page.click("#bell")
    ana.page.screenshot(path=str(SCREENSHOT))
