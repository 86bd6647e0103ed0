"""Sessions that outlive connections end to end (docs/socketio.md, decision 0065): the real socket.io-client
through a network blip and through API Gateway's own close, against `roomcast serve` with the settings a
developer would export to see it (a small RECOVERY_MAX_EVENTS, a short window and hard timeout)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomcast_local.cli import mint_token
from roomcast_local.testing import DEVELOPMENT_SECRET, RunningStack, start_stack, stop_stack
from tests.e2e.client import company

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MAX_EVENTS = "8"
WINDOW = "3"
HARD_TIMEOUT = "6"


@pytest.fixture(scope="module")
def blip_stack() -> Iterator[RunningStack]:
    running = start_stack(environment={"RECOVERY_MAX_EVENTS": MAX_EVENTS})
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def closing_stack() -> Iterator[RunningStack]:
    running = start_stack("--hard-timeout", HARD_TIMEOUT, environment={"RECOVERY_WINDOW_SECONDS": WINDOW})
    yield running
    stop_stack(running)


def scenario(stack: RunningStack, name: str) -> None:
    if not (ROOT / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("socket.io-client is not installed: run `make install` (npm ci)")
    acme = company()
    environment = {
        **os.environ,
        "SCENARIO": name,
        "ROOMCAST_URL": stack.http_url,
        "RECOVERY_MAX_EVENTS": MAX_EVENTS,
        "RECOVERY_WINDOW_SECONDS": WINDOW,
        "HARD_TIMEOUT": HARD_TIMEOUT,
        **{
            f"TOKEN_{user.upper()}": mint_token(user, acme, None, 3600, DEVELOPMENT_SECRET)
            for user in ("ana", "ben", "carl", "dora")
        },
    }
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for socket.io-client"
    finished = subprocess.run(  # noqa: S603 - node with our own script
        [node, str(ROOT / "tests" / "e2e" / "socketio_recovery.mjs")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr + "\n--- stack log ---\n" + stack.log()[-4000:]
    assert "all passed" in finished.stdout


def test_socketio_client_recovers_through_a_network_blip(blip_stack: RunningStack) -> None:
    scenario(blip_stack, "blip")


def test_socketio_client_recovers_through_the_gateways_close(closing_stack: RunningStack) -> None:
    scenario(closing_stack, "gateway")
