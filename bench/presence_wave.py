"""The login wave's arithmetic (bench/presence_capacity.py, issue 23): the posts a wave measured at n agents makes
in each simulated second at the full size, its busiest second, and the threshold that keeps it within a target.
Pure, and without the environment the bench sets up, so that the tests can take it alone."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from shared.domain.presence import digest_interval


@dataclass(frozen=True, order=True)
class Burst:
    """One announcement as the stand-in saw it: the simulated moment its frame was posted at, and to how many."""

    at: float
    posts: int


WAVE_SECONDS = 1800  # the login wave: every agent signs in within 30 minutes


@dataclass(frozen=True)
class Wave:
    """A login wave as measured at n agents: each status:* announcement and each presence:changed frame."""

    n: int
    posts_per_second: int
    """PRESENCE_POSTS_PER_SECOND the run had (scaled to n): the digests' intervals follow from it."""
    status: list[Burst]
    digests: list[Burst]


Series = dict[int, float]


def per_second_at_full_size(wave: Wave, full: int) -> dict[str, Series]:
    """The wave's posts in each simulated second at `full` agents, by kind. An agent at n stands for full/n
    agents at full size, who sign in over the gap to the next one at n: a status:* announcement made at n stands
    for full/n of them, each taken at the largest company room among them (the users online at n times full/n,
    less the new agent's own connection: an upper bound by one gap's growth of the room). A digest reaches a
    room full/n times as large at the same interval (the posts a second were scaled with n), and its posts are
    spread over that interval: it is that rate PRESENCE_POSTS_PER_SECOND bounds, however fast its chunk workers
    post them. `full` = n: the wave as measured, spread the same way."""
    scale = full / wave.n
    gap = WAVE_SECONDS / wave.n
    status: defaultdict[int, float] = defaultdict(float)
    for burst in wave.status:
        room = (burst.posts + 1) * scale - 1
        _spread(status, burst.at, gap, scale * room)
    digests: defaultdict[int, float] = defaultdict(float)
    for burst in wave.digests:
        _spread(digests, burst.at, digest_interval(burst.posts, wave.posts_per_second), burst.posts * scale)
    return {"status": dict(status), "digest": dict(digests)}


def _spread(series: defaultdict[int, float], start: float, seconds: float, posts: float) -> None:
    """Add `posts`, made evenly over [start, start + seconds), to the seconds they fall in."""
    second = math.floor(start)
    while second < start + seconds:
        overlap = min(start + seconds, second + 1) - max(start, second)
        series[second] += posts * overlap / seconds
        second += 1


def busiest_second(series: dict[str, Series]) -> tuple[int, float]:
    """The second with the most posts of every kind together, and those posts: the peak of the sum, not the
    sum of each kind's peak (a company posts status:* under the threshold and digests over it)."""
    total: defaultdict[int, float] = defaultdict(float)
    for counts in series.values():
        for second, posts in counts.items():
            total[second] += posts
    if not total:
        return 0, 0.0
    second = max(total, key=total.__getitem__)
    return second, total[second]


def sign_ins_per_second(wave: Wave, full: int) -> float:
    """The sign-ins a second announced on their own, at full size, from the moments of the status:* announcements
    measured at n (the first agent's, to nobody, is not one)."""
    moments = [burst.at for burst in wave.status]
    if len(moments) < 2:
        raise ValueError("fewer than two status:* announcements: no rate to measure")
    return (len(moments) - 1) / (moments[-1] - moments[0]) * full / wave.n


def threshold_for(target: float, sign_ins: float) -> int:
    """The largest PRESENCE_DIGEST_THRESHOLD whose status:* phase stays within `target` posts a second: each
    sign-in a company at or under it makes is announced to every colleague online, at most threshold - 1 of them;
    threshold x the rate <= target keeps one colleague's margin. Rounded to a millionth first, so that a rate
    measured as a float does not lose a user to its last bit."""
    return max(0, math.floor(round(target / sign_ins, 6)))


def size_for(threshold: int, full: int, near: int) -> tuple[int, int]:
    """An n near `near` at which `threshold` scales to whole users, and those users (at least 2, so that one
    status:* announcement has someone to reach): a threshold rounded at n would be another threshold at full."""
    users = max(2, round(threshold * near / full))
    return round(full * users / threshold), users
