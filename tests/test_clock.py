"""One clock (decision 0086): nothing in src/ reads the time but the clock the services pass in."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
READINGS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time"), ("time", "monotonic")}
# The clock itself; and an id's millisecond prefix, which only sorts ids and decides nothing.
READERS = {"shared/protocol/clock.py", "shared/protocol/ids.py"}


def readings(source: str) -> list[str]:
    """`datetime.now()`, `time.time()` and the like called in `source`, or a `utc_now` in any form."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in READINGS:
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name | ast.alias) and "utc_now" in {
            getattr(node, "id", None),
            getattr(node, "name", None),
        }:
            found.append("utc_now")
    return found


def test_time_is_read_from_the_clock_passed_in() -> None:
    offenders = {
        name: found
        for path in sorted(SRC.rglob("*.py"))
        if (name := str(path.relative_to(SRC))) not in READERS and (found := readings(path.read_text()))
    }
    assert offenders == {}, "take `now`, or the services' clock"


def test_the_check_sees_a_reading_of_the_time() -> None:
    assert readings("from datetime import UTC, datetime\nstamp = datetime.now(UTC)\n") == ["datetime.now"]
    assert readings("import time\nstarted = time.monotonic()\n") == ["time.monotonic"]
    assert readings("from shared.protocol.clock import utc_now\n") == ["utc_now"]
    assert readings("now = clock.now()\n") == []
