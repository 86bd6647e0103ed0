"""The login wave's arithmetic (bench/presence_wave.py): a wave measured at n taken to the full size second by
second, its busiest second, the sign-in rate and the threshold that keeps the wave within a target."""

from __future__ import annotations

import pytest
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


def _wave(n: int, status: list[Burst], digests: list[Burst], posts_per_second: int = 1) -> Wave:
    return Wave(n=n, posts_per_second=posts_per_second, status=status, digests=digests)


def test_a_status_announcement_stands_for_the_sign_ins_of_its_gap_each_to_the_largest_room_among_them() -> None:
    # n = 1,800: one sign-in a second. The third agent's announcement reaches the 2 online before it.
    wave = _wave(WAVE_SECONDS, [Burst(at=4.5, posts=2)], [])
    series = per_second_at_full_size(wave, 10 * WAVE_SECONDS)
    # At 10x: 10 sign-ins over [4.5, 5.5), each to up to 3 x 10 - 1 = 29 colleagues: 290 posts, half in each second.
    assert series["status"] == pytest.approx({4: 145.0, 5: 145.0})
    assert per_second_at_full_size(wave, WAVE_SECONDS)["status"] == pytest.approx({4: 1.0, 5: 1.0})


def test_a_digest_reaches_a_room_grown_with_n_its_posts_spread_over_its_interval() -> None:
    # 6 members at 2 posts a second: digest_interval is 3 s.
    wave = _wave(100, [], [Burst(at=10.0, posts=6)], posts_per_second=2)
    series = per_second_at_full_size(wave, 1000)
    assert series["digest"] == pytest.approx({10: 20.0, 11: 20.0, 12: 20.0})


def test_the_peak_is_the_busiest_second_of_both_kinds_together_not_the_sum_of_their_peaks() -> None:
    series = {"status": {10: 900.0, 11: 100.0}, "digest": {11: 500.0, 12: 600.0}}
    assert busiest_second(series) == (10, 900.0)  # 900 + 600 = 1,500 if the two peaks were added
    assert busiest_second({"status": {3: 1.0}, "digest": {3: 2.5}}) == (3, 3.5)
    assert busiest_second({"status": {}, "digest": {}}) == (0, 0.0)


def test_the_sign_in_rate_is_measured_from_the_status_announcements_and_taken_to_the_full_size() -> None:
    gap = WAVE_SECONDS / 160
    wave = _wave(160, [Burst(at=gap * index, posts=index - 1) for index in range(2, 9)], [])
    assert sign_ins_per_second(wave, 10_000) == pytest.approx(10_000 / WAVE_SECONDS)
    with pytest.raises(ValueError, match="fewer than two"):
        sign_ins_per_second(_wave(40, [Burst(at=11.25, posts=1)], []), 10_000)


def test_the_threshold_for_a_target_keeps_the_status_phase_within_it_whatever_the_rates_last_bit() -> None:
    # 10,000 agents over 30 minutes: 5.56 sign-ins a second, each to up to threshold - 1 colleagues.
    assert threshold_for(1000.0, 10_000 / WAVE_SECONDS) == 180
    assert threshold_for(1000.0, 10_000 / WAVE_SECONDS * (1 + 1e-15)) == 180
    assert threshold_for(1000.0, 10_000 / WAVE_SECONDS * (1 - 1e-15)) == 180
    assert threshold_for(1000.0, 6.0) == 166
    assert threshold_for(1000.0, 2000.0) == 0


def test_the_size_a_threshold_is_measured_at_makes_it_a_whole_number_of_users() -> None:
    n, users = size_for(180, 10_000, near=160)
    assert (n, users) == (167, 3)
    assert users * 10_000 / n == pytest.approx(180, rel=0.01)
    assert size_for(10, 10_000, near=160) == (2000, 2)  # at least two users: one announcement reaches someone
