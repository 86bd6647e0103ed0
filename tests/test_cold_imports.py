"""What a function loads at import is what every cold start pays for (docs/performance.md, decision 0050): modules
that only some routes or tasks use are loaded by those, on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HANDLERS = sorted(path.stem for path in (SRC / "handlers").glob("*.py") if path.stem != "__init__")

# Loaded by the first use that needs them, never at import.
LAZY = {
    "asyncio": "the first broadcast's event loop (shared.delivery.management_api)",
    "aiohttp": "the first broadcast",
    "httptools": "the first DynamoDB connection (shared.stores.dynamo_http)",
}
# Powertools' event classes load all of them at once: only for the events read through them.
EVENT_CLASSES = "aws_lambda_powertools.utilities.data_classes"
READ_THROUGH_EVENT_CLASSES = {"authorizer", "backend_events"}
# What the services build on first use (decision 0106): the wiring imports none of it for every function.
BUILT_ON_FIRST_USE = {
    "shared.delivery.delayed",
    "shared.delivery.heartbeat",
    "shared.delivery.large_rooms",
    "shared.domain.access",
    "shared.domain.analytics",
    "shared.domain.conversations",
    "shared.domain.messages",
    "shared.domain.presence",
    "shared.domain.sessions",
    "shared.protocol.actions",
    "shared.stores.analytics",
    "shared.stores.budget",
    "shared.stores.conversations",
    "shared.stores.notifications",
    "shared.stores.presence_digest",
    "shared.stores.ratelimit",
    "shared.stores.sessions",
    "aws_lambda_powertools.utilities.idempotency",
}
# The Socket.IO codec: only the functions whose cold path is Socket.IO itself.
SOCKETIO = "shared.protocol.socketio"
SPEAK_SOCKETIO = {"heartbeat"}


def _run(code: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(SRC), "POWERTOOLS_TRACE_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)  # noqa: S603
    return done.stdout


def _loaded_by(module: str) -> set[str]:
    return set(json.loads(_run(f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))")))


@pytest.mark.parametrize("name", HANDLERS)
def test_a_handler_loads_nothing_its_cold_path_does_not_need(name: str) -> None:
    loaded = _loaded_by(f"handlers.{name}")
    assert {module for module in LAZY if module in loaded} == set()
    assert (SOCKETIO in loaded) == (name in SPEAK_SOCKETIO)
    assert (EVENT_CLASSES in loaded) == (name in READ_THROUGH_EVENT_CLASSES)


def test_default_loads_the_namespaces_with_the_first_socketio_message() -> None:
    loaded = _loaded_by("handlers.default")
    assert {
        "shared.routes.conversations",
        "shared.routes.notifications",
        "shared.routes.analytics",
        SOCKETIO,
    } & loaded == set()


def test_the_task_validator_is_built_by_the_first_task_not_the_import() -> None:
    code = "import handlers.deferred, shared.delivery.deferred as tasks; print(tasks._task_adapter.cache_info())"
    assert "currsize=0" in _run(code)


def test_the_wiring_imports_what_only_some_functions_use_on_first_use() -> None:
    assert _loaded_by("shared.wiring.services") & BUILT_ON_FIRST_USE == set()


def test_the_sweep_loads_presence_and_none_of_the_other_services() -> None:
    assert _loaded_by("handlers.sweep") & BUILT_ON_FIRST_USE == set()


def test_a_heartbeat_shard_loads_neither_the_socketio_app_nor_sessions() -> None:
    loaded = _loaded_by("handlers.heartbeat")
    assert {"shared.wiring.socketio_app", "shared.wiring.namespace", "shared.domain.sessions"} & loaded == set()


def test_the_delayed_task_validator_is_built_by_the_first_task_not_the_import() -> None:
    code = "import handlers.delayed, shared.delivery.delayed as tasks; print(tasks._task_adapter.cache_info())"
    assert "currsize=0" in _run(code)


@pytest.mark.parametrize("name", ["connect", "disconnect"])
def test_connect_and_disconnect_load_no_action_pipeline(name: str) -> None:
    """They run no action: the pipeline, the action and reply models and the rate limit are not theirs to load."""
    pipeline = {
        "shared.wiring.namespace",
        "shared.protocol.actions",
        "shared.protocol.outbound",
        "shared.stores.ratelimit",
    }
    assert _loaded_by(f"handlers.{name}") & pipeline == set()


@pytest.mark.parametrize("name", HANDLERS)
def test_a_handler_loads_without_a_full_collection_and_leaves_the_collector_on(name: str) -> None:
    """A full collection in the middle of the import scans every object loaded so far to free nothing (decision
    0106): none runs, what the import allocated is frozen, and the collector is on again afterwards."""
    code = (
        "import gc, json; full = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and info['generation'] == 2 and full.append(1))\n"
        f"import handlers.{name}\n"
        "print(json.dumps([len(full), gc.isenabled(), gc.get_freeze_count() > 0]))"
    )
    assert json.loads(_run(code)) == [0, True, True]
