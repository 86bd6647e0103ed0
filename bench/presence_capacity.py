"""Presence at company scale (issue 23, item 1): the posts that presence costs in three scenarios, before (every
change announced on its own, as with the digests off) and after (decision 0089's digests).

The real handlers run in-process against moto ($connect, $disconnect, the deferred and the delayed functions),
in simulated time: each connect, close and delayed task (a grace's end, a digest's flush) is run at its moment of
a simulated clock that jumps from one to the next, nothing sleeps. The @connections stand-in counts every post,
by the second of simulated time it was made in and by event (status:* or presence:changed).

Each scenario is run at a few n agents of one company (the flap at 10, 20, 40, the storm at 20, 40, 80, the login
wave at 40, 80, 160), PRESENCE_DIGEST_THRESHOLD and PRESENCE_POSTS_PER_SECOND
taken in the same proportion to n as the defaults (500 and 500) are to the scenario's full size, so that the
digests' intervals are those of the full size. The flap and the storm: a power law c * n^p is fitted to the
measured totals (p is reported) and extrapolated. The login wave: its posts in each simulated second are taken to
the full size announcement by announcement (`per_second_at_full_size`), and its peak is the busiest second of
status:* and presence:changed together. moto runs about ten DynamoDB calls a connect: larger n would not fit the
few minutes a piece may take.
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

from bench.presence_wave import (
    WAVE_SECONDS,
    Burst,
    Wave,
    busiest_second,
    per_second_at_full_size,
    sign_ins_per_second,
    size_for,
    threshold_for,
)
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
    """@connections that keeps nothing but the count of posts, by kind (status:* or presence:changed) and by
    announcement (one frame posted at one simulated moment)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self._posts: dict[str, Counter[tuple[float, bytes]]] = {"status": Counter(), "digest": Counter()}

    def post(self, connection_id: str, data: bytes) -> Delivery:  # noqa: ARG002 - every post delivered
        kind = "digest" if DIGEST in data else "status"
        self._posts[kind][self._clock(), data] += 1
        return Delivery.DELIVERED

    def bursts(self, kind: str) -> list[Burst]:
        return sorted(Burst(at, posts) for (at, _), posts in self._posts[kind].items())

    def reset(self) -> None:
        for counter in self._posts.values():
            counter.clear()

    def total(self) -> int:
        return sum(sum(counter.values()) for counter in self._posts.values())


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


def login_wave(n: int, threshold: int, posts_per_second: int) -> Wave:
    """n agents sign in spread evenly over 30 minutes, one connection each."""
    with world(threshold, posts_per_second) as (simulation, gateway):
        for index in range(n):
            simulation.at(WAVE_SECONDS * index / n, partial(_connect, f"a{index}-0", f"a{index}"))
        simulation.run()
        return Wave(n, posts_per_second, gateway.bursts("status"), gateway.bursts("digest"))


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


def _figure(points: list[tuple[int, float]], full: int, target: float, unit: str) -> dict[str, Any]:
    c, p = fit(points)
    sizes = [n for n, _ in points]
    value = c * full**p
    return {
        "value": round(value),
        "target": target,
        "unit": unit,
        "how": f"extrapolated to n={full} from n={sizes} (fit c*n^p, p={p:.2f}), measured in moto"
        if value
        else f"measured 0 at n={sizes}: 0 at any n",
        "measured": {str(n): round(v, 1) for n, v in points},
        "holds": value <= target,
        "limit": POST_LIMIT,
    }


def _default(parameter: str) -> int:
    return int(load_template()["Parameters"][parameter]["Default"])


# The template's defaults, which the scenarios are measured at (scaled to n).
THRESHOLD = _default("PresenceDigestThreshold")
POSTS_PER_SECOND = _default("PresencePostsPerSecond")


def _scaled(value: int, n: int, full: int) -> int:
    """A setting in the same proportion to n as `value` is to the full size."""
    return max(1, round(value * n / full))


def _wave_figure(waves: list[Wave], full: int, target: float) -> dict[str, Any]:
    """A login wave's peak at `full` agents, from the waves measured at a few n: the largest n's, the least rounded
    by whole agents (each n's beside it)."""
    series = per_second_at_full_size(max(waves, key=lambda wave: wave.n), full)
    second, value = busiest_second(series)
    return {
        "value": round(value),
        "target": target,
        "unit": "posts/s",
        "holds": value <= target,
        "busiest_second": second,
        "status_posts_per_s": round(max(series["status"].values(), default=0.0)),
        "digest_posts_per_s": round(max(series["digest"].values(), default=0.0)),
        "measured": {str(wave.n): round(busiest_second(per_second_at_full_size(wave, wave.n))[1], 2) for wave in waves},
        "extrapolated": {str(wave.n): round(busiest_second(per_second_at_full_size(wave, full))[1]) for wave in waves},
        "limit": POST_LIMIT,
    }


def _login_wave(full: int, target: float) -> dict[str, Any]:
    """The login wave at the template's defaults, and at the threshold an operator sets for a company that signs
    in in waves: the largest that keeps its peak within `target`, from the sign-in rate measured."""
    sizes = list(WAVE_SIZES)
    # Before, at the largest n alone: nothing but status:*, which the smaller n take to the same figure.
    before = _wave_figure([login_wave(sizes[-1], OFF, _scaled(POSTS_PER_SECOND, sizes[-1], full))], full, target)
    waves = [
        login_wave(n, _scaled(THRESHOLD, n, full), _scaled(POSTS_PER_SECOND, n, full)) for n in sizes
    ]  # fmt: skip
    defaults = _wave_figure(waves, full, target)
    sign_ins = sign_ins_per_second(waves[-1], full)
    threshold = threshold_for(target, sign_ins)
    n, users = size_for(threshold, full, near=sizes[-1])
    posts_per_second = _scaled(POSTS_PER_SECOND, n, full)
    operator = _wave_figure([login_wave(n, users, posts_per_second)], full, target)
    spread = (
        f"taken to n={full:,} announcement by announcement: each status:* announcement at n stands for {full:,}/n "
        "sign-ins over the gap to the next, each to the largest company room among them (an upper bound by one "
        f"gap's growth); each digest reaches {full:,}/n times the members, its posts spread over its interval "
        "(digest_interval): the rate PRESENCE_POSTS_PER_SECOND bounds, its chunk workers posting a large room "
        "within CompanyPostsPerSecond"
    )
    floor = sign_ins * (THRESHOLD - 1)
    return {
        **defaults,
        "configuration": f"the template's defaults: PresenceDigestThreshold {THRESHOLD}, "
        f"PresencePostsPerSecond {POSTS_PER_SECOND}",
        "how": f"the busiest simulated second of the whole wave, status:* and presence:changed together (the peak "
        f"of their sum, not the sum of their peaks: the company posts status:* under the threshold, digests over "
        f"it), at the template's defaults. Measured in moto at n={sizes} (threshold and posts a second scaled by "
        f"n/{full:,}), {spread}; the value is n={sizes[-1]}'s, each n's is under `extrapolated`. It misses by "
        f"arithmetic: SPEC gives a company at or under the threshold status:* within a second, so in the seconds "
        f"before the company passes {THRESHOLD}, each of the {sign_ins:.2f} sign-ins a second (measured at "
        f"n={sizes[-1]}, taken to {full:,}) reaches up to {THRESHOLD - 1} colleagues: {floor:,.0f} posts a second "
        f"whatever the digests do (their own peak: {defaults['digest_posts_per_s']:,} a second, later). "
        f"A company that signs in in waves needs PresenceDigestThreshold {threshold} "
        "(`threshold_for_target`, `at_threshold_for_target`)",
        "sign_ins_per_s": round(sign_ins, 3),
        "threshold_for_target": threshold,
        "at_threshold_for_target": {
            **operator,
            "configuration": f"PresenceDigestThreshold {threshold}, PresencePostsPerSecond {POSTS_PER_SECOND}",
            "how": f"the same peak with PresenceDigestThreshold {threshold}, the largest whose status:* phase "
            f"keeps within {target:,.0f} posts a second: {threshold} x {sign_ins:.2f} sign-ins a second "
            f"<= {target:,.0f}. Measured in moto at n={n}, with a threshold of {users} users (a whole number at "
            f"n: {users * full / n:.1f} at {full:,}) and {posts_per_second} posts a second "
            f"({posts_per_second * full / n:.0f} at {full:,}), {spread}",
        },
        "before": {
            **before,
            "how": f"digests off (every sign-in announced to every colleague online): measured in moto at "
            f"n={sizes[-1]}, {spread}",
        },
    }


def run() -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metrics lines (EMF), not the bench's output
        return _run()


def _run() -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {}
    # The flap and the storm at 1,000 agents: the defaults scaled to n, as they are to 1,000.
    for key, scenario, target, sizes in (
        ("flap_presence_posts_1000", flap, 0.0, FLAP_SIZES),
        ("storm_presence_posts_1000", storm, 40_000.0, SIZES),
    ):
        posts = {n: _scaled(POSTS_PER_SECOND, n, 1000) for n in sizes}
        before = [(n, float(scenario(n, OFF, posts[n]))) for n in sizes]
        after = [(n, float(scenario(n, _scaled(THRESHOLD, n, 1000), posts[n]))) for n in sizes]
        results[key] = {**_figure(after, 1000, target, "posts"), "before": _figure(before, 1000, target, "posts")}
    results["login_wave_peak_posts_per_s_10000"] = _login_wave(10_000, 1000.0)
    results["presence_capacity_bench_s"] = round(time.perf_counter() - started)
    return {"capacity": results}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
