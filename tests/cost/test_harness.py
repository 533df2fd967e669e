"""The shared timing harness: round-robin order, robust statistics, passes, reference units and
repeatability (a fake clock, so every number is worked out by hand)."""
from __future__ import annotations

import pytest

import gc

from dse.cost.harness import (Timing, get_statistic, local_reference, lower_quartile,
                              repeatability, round_robin, time_groups, trimmed_mean)


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
    samples, after = round_robin([a, b], rounds=3, inner=[2, 1], clock=clock)
    assert clock.calls == ["a", "a", "b"] * 3
    assert samples == [[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]]  # seconds per call
    assert after == []  # no reference


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


def test_lower_quartile_by_hand():
    # position 0.25 * (n - 1) of the sorted samples, interpolated (numpy's default)
    assert lower_quartile([5.0, 1.0, 4.0, 2.0, 3.0]) == 2.0        # position 1
    assert lower_quartile([4.0, 3.0, 2.0, 1.0]) == pytest.approx(1.75)  # position 0.75
    assert lower_quartile([7.0]) == 7.0
    assert get_statistic("q25") is lower_quartile


def test_round_robin_brackets_every_sample_with_the_reference():
    clock = FakeClock()
    a, b, ref = clock.fn("a", [1.0]), clock.fn("b", [3.0]), clock.fn("r", [0.5])
    trace: list[float] = [9.0]  # an earlier group's reference sample: indices continue after it
    samples, after = round_robin([a, b], rounds=2, inner=[1, 1], clock=clock, reference=ref,
                                 reference_inner=2, trace=trace)
    assert clock.calls == ["r", "r", "a", "r", "r", "b", "r", "r"] * 2
    assert samples == [[1.0, 1.0], [3.0, 3.0]]
    assert trace == [9.0] + [0.5] * 6
    assert after == [[2, 5], [3, 6]]  # the reference sample right after each sample


def test_local_reference_is_the_median_of_the_neighbours():
    trace = [1.0, 2.0, 3.0, 4.0, 5.0, 60.0]
    assert local_reference(trace, 3, 0) == 3.5   # the two that bracket the sample: 3 and 4
    assert local_reference(trace, 3, 1) == 3.5   # 2, 3 | 4, 5
    assert local_reference(trace, 4, 1) == 4.5   # 3, 4 | 5, 60: the outlier does not count
    assert local_reference(trace, 1, 2) == 2.5   # at the start: 1 | 2, 3, 4


def test_reference_units_cancel_a_machine_that_slows_down():
    # the machine runs at half speed in the second half: the item takes 1 s then 2 s per call,
    # the reference 0.1 s then 0.2 s. Reference units: 10 throughout; at reference_s = 0.15 s
    # that is 1.5 s in both halves, which agree; in plain seconds 1 vs 2 do not.
    timing = Timing([[[1.0, 1.0], [2.0, 2.0]]], "median", [[[0.1, 0.1], [0.2, 0.2]]], 0.15)
    assert timing.seconds() == [pytest.approx(1.5)]
    assert timing.halves() == ([pytest.approx(1.5)], [pytest.approx(1.5)])
    assert timing.repeatability() == 1.0
    assert timing.raw().halves() == ([1.0], [2.0])
    assert timing.raw().repeatability() == 0.0  # same +-10 % test, plain seconds


def test_items_are_a_share_of_the_run_converted_at_a_chosen_reference():
    # two items timed in one run; the second alone, converted at 0.3 s per reference call
    # instead of the run's 0.15 s: 2 s / 0.2 s = 10 reference units -> 3 s
    timing = Timing([[[1.0], [1.0]], [[2.0], [2.0]]], "median",
                    [[[0.1], [0.1]], [[0.2], [0.2]]], 0.15)
    second = timing.items(1, None, reference_s=0.3)
    assert second.seconds() == [pytest.approx(3.0)]
    assert timing.items(1).seconds() == [pytest.approx(1.5)]  # default: the run's conversion
    assert timing.items(0, 1).samples == [[[1.0], [1.0]]]
    assert Timing([[[1.0]], [[2.0]]], "median").items(1).seconds() == [2.0]  # plain seconds


def test_time_groups_counts_in_reference_units():
    clock = FakeClock()
    # after the 10th call everything doubles: the item 1 s -> 2 s, the reference 0.25 -> 0.5 s
    state = {"calls": 0}

    def slowing(name: str, cost: float):
        def call() -> None:
            clock.calls.append(name)
            state["calls"] += 1
            clock.now += cost * (2.0 if state["calls"] > 10 else 1.0)
        return call

    f, ref = slowing("f", 1.0), slowing("r", 0.25)
    # sizing: f, r (target 0 s, warmup 0) = calls 1-2; then each round r, f, r: f is call
    # 4, 7, 10 and 13; the reference samples are calls 3, 5, 6, 8, 9 (0.25) and 11, 12, 14 (0.5)
    timing = time_groups([[f]], rounds=4, passes=2, target_s=0.0, clock=clock, warmup=0,
                         reference=ref, reference_target_s=0.0, reference_window=0)
    assert clock.calls == ["f", "r"] + ["r", "f", "r"] * 4
    assert timing.samples == [[[1.0, 1.0], [1.0, 2.0]]]
    # brackets: (3, 5), (6, 8), (9, 11) -> (0.25 + 0.5) / 2, (12, 14)
    assert timing.references == [[[0.25, 0.25], [0.375, 0.5]]]
    assert timing.reference_s == 0.25  # the median of the eight reference samples
    first, second = timing.halves()
    assert first == [pytest.approx(1.0)]  # 1 / 0.25 x 0.25
    assert second == [pytest.approx(0.5 * (1 / 0.375 + 2 / 0.5) * 0.25)]  # 0.8333
    fixed = time_groups([[slowing("g", 1.0)]], rounds=2, passes=1, target_s=0.0, clock=clock,
                        warmup=0, reference=slowing("q", 0.25), reference_s=1.0)
    assert fixed.reference_s == 1.0  # a calibrated reference time is kept, not re-measured


def test_time_groups_times_with_the_garbage_collector_off():
    seen = []
    assert gc.isenabled()
    time_groups([[lambda: seen.append(gc.isenabled())]], rounds=2, passes=1, target_s=0.0,
                warmup=0)
    assert seen[-2:] == [False, False]  # the timed calls
    assert gc.isenabled()  # restored
