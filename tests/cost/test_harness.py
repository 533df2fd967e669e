"""The shared timing harness: round-robin order, robust statistics, passes and repeatability
(a fake clock, so every number is worked out by hand)."""
from __future__ import annotations

import pytest

from dse.cost.harness import (Timing, get_statistic, repeatability, round_robin, time_groups,
                              trimmed_mean)


class FakeClock:
    """Time advances only when a benchmarked function runs, by that function's cost."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def fn(self, name: str, costs: list[float]):
        """A function costing ``costs[i]`` seconds on its i-th call (the last one repeats)."""
        count = [0]

        def call() -> None:
            self.calls.append(name)
            self.now += costs[min(count[0], len(costs) - 1)]
            count[0] += 1
        return call


def test_round_robin_samples_every_function_in_turn_each_round():
    clock = FakeClock()
    a, b = clock.fn("a", [1.0]), clock.fn("b", [3.0])
    samples = round_robin([a, b], rounds=3, inner=[2, 1], clock=clock)
    assert clock.calls == ["a", "a", "b"] * 3
    assert samples == [[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]]  # seconds per call


def test_time_groups_visits_groups_in_every_pass_and_keeps_passes_apart():
    clock = FakeClock()
    a, b, c = clock.fn("a", [1.0]), clock.fn("b", [2.0]), clock.fn("c", [5.0])
    # target_s=0: one call per sample; warmup=0: only the one call that sizes the inner loop
    timing = time_groups([[a, b], [c]], rounds=4, passes=2, target_s=0.0, clock=clock, warmup=0)
    sizing, timed = clock.calls[:3], clock.calls[3:]
    assert sizing == ["a", "b", "c"]
    assert timed == ["a", "b", "a", "b", "c", "c"] * 2  # 2 rounds per pass, groups in turn
    assert [len(passes) for passes in timing.samples] == [2, 2, 2]
    assert timing.seconds() == [1.0, 2.0, 5.0]


def test_the_statistic_ignores_a_disturbed_sample():
    # samples 1, 1, 100 (a burst of load), 1, 1: median, trimmed mean and min stay at 1
    for name in ("median", "trimmed", "min"):
        clock = FakeClock()
        f = clock.fn("f", [0.0, 1.0, 1.0, 100.0, 1.0, 1.0])  # the first call sizes the loop
        t = time_groups([[f]], rounds=5, passes=1, target_s=0.0, clock=clock, warmup=0,
                        statistic=name)
        assert t.seconds() == [pytest.approx(1.0)], name
    clock = FakeClock()
    f = clock.fn("f", [0.0, 1.0, 1.0, 100.0, 1.0, 1.0])
    # the plain mean would be 20.8: the trimmed mean is what a robust statistic is for
    samples = time_groups([[f]], rounds=5, passes=1, target_s=0.0, clock=clock, warmup=0).samples
    assert sum(samples[0][0]) / 5 == pytest.approx(20.8)


def test_trimmed_mean_by_hand():
    # 20 % of 5 = 1 dropped at each end: mean(2, 3, 4) = 3
    assert trimmed_mean([100.0, 3.0, 1.0, 4.0, 2.0]) == 3.0
    # 20 % of 4 = 0 dropped: the plain mean
    assert trimmed_mean([1.0, 2.0, 3.0, 10.0]) == 4.0
    with pytest.raises(ValueError, match="statistic must be one of"):
        get_statistic("mean")


def test_repeatability_arithmetic():
    # second vs first: +5 %, +20 %, -5 %, +50 % -> two of four within +-10 %
    assert repeatability([1.0, 2.0, 4.0, 8.0], [1.05, 2.4, 3.8, 12.0]) == 0.5
    # exactly 10 % apart agrees; 10.5 % does not
    assert repeatability([1.0, 1.0], [1.1, 0.895]) == 0.5
    with pytest.raises(ValueError):
        repeatability([1.0], [])


def test_halves_are_the_first_and_second_half_of_the_passes():
    # item 0: passes 1, 1 | 1.05, 1.05 -> agree; item 1: 2 | 2.5 -> +25 %, disagree
    timing = Timing([[[1.0], [1.0], [1.05], [1.05]], [[2.0], [2.0], [2.5], [2.5]]], "median")
    assert timing.halves() == ([1.0, 2.0], [1.05, 2.5])
    assert timing.repeatability() == 0.5
    assert timing.seconds() == [pytest.approx(1.025), pytest.approx(2.25)]
