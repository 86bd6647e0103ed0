"""Presence at company scale (issue 23, item 1): the posts that presence costs in three scenarios, before (every
change announced on its own, as with the digests off) and after (decision 0089's digests).

The real handlers run in-process against moto ($connect, $disconnect, the deferred and the delayed functions),
in simulated time: each connect, close and delayed task (a grace's end, a digest's flush) is run at its moment of
a simulated clock that jumps from one to the next, nothing sleeps. The @connections stand-in counts every post,
by the second of simulated time it was made in and by event (status:* or presence:changed).

Each scenario is run at a few n agents of one company (the flap at 10, 20, 40, the storm at 20, 40, 80, the login
wave at 40, 80, 160), PRESENCE_DIGEST_THRESHOLD and PRESENCE_POSTS_PER_SECOND
taken in the same proportion to n as the defaults (500 and 500) are to the scenario's full size, so that the
digests' intervals are those of the full size; a power law c * n^p is fitted to the measured figures (p is
reported) and extrapolated. moto runs about ten DynamoDB calls a connect: larger n would not fit the few minutes a
piece may take.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import bench.calls  # moto's credentials and quiet handlers, set before the handlers read them
from roomcast_local.environment import DEVELOPMENT_SECRET

os.environ.update(
    RECOVERY_TABLE="bench-recovery", JWT_SECRET_KEY_CALL=DEVELOPMENT_SECRET, PRESENCE_GRACE_SECONDS="30"
)  # fmt: skip

import boto3
from moto import mock_aws

from roomcast_local import testing
from roomcast_local.template import create_tables, load_template
from roomcast_local.testing import QueuedDeferrer, RecordingGateway, deliver, lifecycle_event, sqs_event
from shared.delivery.delayed import DelayedTask
from shared.delivery.management_api import Delivery
from shared.wiring import services as runtime
from shared.wiring.services import build_services
from shared.wiring.settings import settings

TABLES = {**bench.calls.TABLES, "RecoveryTable": "bench-recovery"}
# Small: moto runs about 10 DynamoDB calls a connect, and the piece must run within a few minutes.
SIZES = (20, 40, 80)
FLAP_SIZES = (10, 20, 40)
WAVE_SIZES = (40, 80, 160)
COMPANY = "big"
OFF = 10**9  # a threshold no company reaches: every change announced on its own, as before the digests
DIGEST = b'"presence:changed"'
# What presence posts are held against: @connections posts count against API Gateway's account-wide rate.
POST_LIMIT = (
    "10,000 requests/s per account and Region, @connections posts included "
    "([API Gateway quotas](https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html))"
)


class CountingGateway(RecordingGateway):
    """@connections that keeps nothing but the count of posts, by simulated second and by kind."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self.by_second: dict[str, Counter[int]] = {"status": Counter(), "digest": Counter()}

    def post(self, connection_id: str, data: bytes) -> Delivery:  # noqa: ARG002 - every post delivered
        kind = "digest" if DIGEST in data else "status"
        self.by_second[kind][math.floor(self._clock())] += 1
        return Delivery.DELIVERED

    def reset(self) -> None:
        for counter in self.by_second.values():
            counter.clear()

    def total(self) -> int:
        return sum(sum(counter.values()) for counter in self.by_second.values())


@dataclass(order=True)
class _Due:
    at: float
    order: int
    action: Callable[[], Any] = field(compare=False)


class Simulation:
    """A clock that jumps to the next thing due; the delay queue's tasks become things due."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[_Due] = []
        self._order = 0

    def at(self, moment: float, action: Callable[[], Any]) -> None:
        self._order += 1
        heapq.heappush(self._due, _Due(moment, self._order, action))

    def delay(self, task: DelayedTask, seconds: int) -> None:
        body = json.dumps(task.model_dump(by_alias=True, mode="json"))
        self.at(self.now + seconds, lambda: testing.invoke("handlers.delayed.handler", sqs_event([body])))

    def run(self, until: float = math.inf) -> None:
        while self._due and self._due[0].at <= until:
            due = heapq.heappop(self._due)
            self.now = max(self.now, due.at)
            due.action()


@contextmanager
def world(threshold: int, posts_per_second: int) -> Iterator[tuple[Simulation, CountingGateway]]:
    os.environ.update(PRESENCE_DIGEST_THRESHOLD=str(threshold), PRESENCE_POSTS_PER_SECOND=str(posts_per_second))
    settings.cache_clear()
    simulation = Simulation()
    gateway = CountingGateway(lambda: simulation.now)
    with mock_aws():
        create_tables(boto3.client("dynamodb"), load_template(), TABLES)
        deferrer = QueuedDeferrer()  # run right after each request (deliver), at the same simulated moment
        services = build_services(
            settings(), gateway=gateway, session=boto3.session.Session(), deferrer=deferrer, delayer=simulation
        )
        runtime.install(services)
        try:
            yield simulation, gateway
        finally:
            runtime.install(None)
            settings.cache_clear()


def _connect(connection_id: str, user: str) -> None:
    deliver(lifecycle_event("connect", connection_id, user, COMPANY))


def _disconnect(connection_id: str, user: str) -> None:
    deliver(lifecycle_event("disconnect", connection_id, user, COMPANY))


def _online(simulation: Simulation, gateway: CountingGateway, n: int) -> None:
    """n agents online before the scenario begins, their announcements and digests done and not counted."""
    simulation.now = -10_000.0
    for index in range(n):
        simulation.at(-10_000.0 + index * 0.01, partial(_connect, f"a{index}-0", f"a{index}"))
    simulation.run(until=-1)
    simulation.now = 0.0
    gateway.reset()


def flap(n: int, threshold: int, posts_per_second: int) -> int:
    """n agents online; API Gateway closes each connection at its 2-hour limit (spread over the 2 hours, as the
    agents came), and each agent is back within a second. Posts in all."""
    with world(threshold, posts_per_second) as (simulation, gateway):
        _online(simulation, gateway, n)
        for index in range(n):
            closes = index * 7200 / n
            simulation.at(closes, partial(_disconnect, f"a{index}-0", f"a{index}"))
            simulation.at(closes + 0.5, partial(_connect, f"a{index}-1", f"a{index}"))
        simulation.run()
        return gateway.total()


def storm(n: int, threshold: int, posts_per_second: int) -> int:
    """n agents online drop at once; they reconnect spread evenly over the next 60 s. Posts in all."""
    with world(threshold, posts_per_second) as (simulation, gateway):
        _online(simulation, gateway, n)
        for index in range(n):
            simulation.at(0.0, partial(_disconnect, f"a{index}-0", f"a{index}"))
            simulation.at(60 * (index + 1) / n, partial(_connect, f"a{index}-1", f"a{index}"))
        simulation.run()
        return gateway.total()


def login_wave(n: int, threshold: int, posts_per_second: int, window: int) -> dict[str, float]:
    """n agents sign in spread evenly over 30 minutes. Posts a second over the busiest `window` seconds (a digest's
    interval at full size: a digest's posts are that rate's share, however fast its own posts go out), of each
    kind."""
    with world(threshold, posts_per_second) as (simulation, gateway):
        for index in range(n):
            simulation.at(1800 * index / n, partial(_connect, f"a{index}-0", f"a{index}"))
        simulation.run()
        return {kind: _busiest(counts, window) / window for kind, counts in gateway.by_second.items()}


def _busiest(counts: Counter[int], window: int) -> int:
    if not counts:
        return 0
    return max(sum(counts[second] for second in range(start, start + window)) for start in counts)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """posts = c * n^p by least squares in log space, over the points above 0; (c, p). All zeros: (0, 0); one
    point above 0: p = 1 through it."""
    points = [(n, value) for n, value in points if value > 0]
    if not points:
        return 0.0, 0.0
    if len(points) == 1:
        ((n, value),) = points
        return value / n, 1.0
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(value) for _, value in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    return math.exp(mean_y - slope * mean_x), slope


def _figure(
    points: list[tuple[int, float]], full: int, target: float, unit: str, exponent: float | None = None
) -> dict[str, Any]:
    """`exponent`: the growth the scenario's scaling implies, taken through the largest n measured (the least
    rounded by whole posts in a window) instead of the fitted one, which is reported beside it."""
    c, p = fit(points)
    sizes = [n for n, _ in points]
    if exponent is None or not c:
        value = c * full**p
        how = f"extrapolated to n={full} from n={sizes} (fit c*n^p, p={p:.2f}), measured in moto"
    else:
        largest, at_largest = max(points)
        value = at_largest * (full / largest) ** exponent
        how = (
            f"extrapolated to n={full} as n^{exponent:g} through n={largest} (fitted over n={sizes}: p={p:.2f}), "
            "measured in moto"
        )
    return {
        "value": round(value),
        "target": target,
        "unit": unit,
        "how": how if value else f"measured 0 at n={sizes}: 0 at any n",
        "measured": {str(n): round(v, 1) for n, v in points},
        "holds": value <= target,
        "limit": POST_LIMIT,
    }


def _scaled(n: int, full: int) -> int:
    """The defaults (500 users, 500 posts a second) in the same proportion to n as to the full size."""
    return max(1, round(500 * n / full))


def run() -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metrics lines (EMF), not the bench's output
        return _run()


def _run() -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {}
    # The flap and the storm at 1,000 agents: threshold and posts a second n/2, as 500 is to 1,000.
    for key, scenario, target, sizes in (
        ("flap_presence_posts_1000", flap, 0.0, FLAP_SIZES),
        ("storm_presence_posts_1000", storm, 40_000.0, SIZES),
    ):
        before = [(n, float(scenario(n, OFF, _scaled(n, 1000)))) for n in sizes]
        after = [(n, float(scenario(n, _scaled(n, 1000), _scaled(n, 1000)))) for n in sizes]
        results[key] = {**_figure(after, 1000, target, "posts"), "before": _figure(before, 1000, target, "posts")}
    # The login wave at 10,000: threshold and posts a second n/20, over the 20 s a digest interval is at full size.
    # status:* grows as n^2 (the sign-in rate and the room it posts to both grow with n), digests as n (their rate
    # is PRESENCE_POSTS_PER_SECOND's).
    window = math.ceil(10_000 / 500)
    before_wave = [(n, login_wave(n, OFF, _scaled(n, 10_000), window)) for n in WAVE_SIZES]
    after_wave = [(n, login_wave(n, _scaled(n, 10_000), _scaled(n, 10_000), window)) for n in WAVE_SIZES]
    direct = _figure([(n, peaks["status"]) for n, peaks in after_wave], 10_000, 1000.0, "posts/s", exponent=2)
    digests = _figure([(n, peaks["digest"]) for n, peaks in after_wave], 10_000, 1000.0, "posts/s", exponent=1)
    peak = direct["value"] + digests["value"]
    results["login_wave_peak_posts_per_s_10000"] = {
        "value": peak,
        "target": 1000.0,
        "unit": "posts/s",
        "limit": POST_LIMIT,
        "how": f"posts a second over the busiest {window} s: status:* while the company is under the threshold "
        "plus presence:changed after it (an upper bound: the two peaks are added), each "
        "extrapolated; a digest's own 10,000 posts go out through the large-room chunk workers, within the "
        "platform's POSTS_PER_SECOND. The status:* part is the sign-in "
        "rate (10,000 / 1,800 s) times the company room under the threshold: about 5.6 x 500 = 2,800 a second "
        "with the default PRESENCE_DIGEST_THRESHOLD; within 1,000 it takes a threshold of 180 or less",
        "status_posts_per_s": direct,
        "digest_posts_per_s": digests,
        "holds": peak <= 1000.0,
        "before": _figure([(n, peaks["status"]) for n, peaks in before_wave], 10_000, 1000.0, "posts/s", exponent=2),
    }
    results["presence_capacity_bench_s"] = round(time.perf_counter() - started)
    return {"capacity": results}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
