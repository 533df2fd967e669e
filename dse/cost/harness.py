"""The repeatable timing harness of ``dse profile calibrate`` and ``validate`` (any runtime).

A latency measured on a shared machine drifts: other processes take time slices, evict caches
and change the clock. Four habits make two measurements of the same thing agree
(nn-Meter, Zhang et al., MobiSys 2021, and HELP, Lee et al., NeurIPS 2021, time on dedicated
devices; a host shared by several users needs them all):

1. **Round robin.** Every round samples every item once, in turn (``item 0, item 1, ...,
   item 0, item 1, ...``), so slow drift and a burst of load hit one round of every item alike
   rather than every round of a few items.
2. **Many short samples.** One sample is an inner loop of calls lasting about ``target_s``
   (the inner count is fixed per item before timing starts), and an item gets many samples.
3. **A robust statistic** of the samples: the median (default), the 20 %-trimmed mean, or the
   minimum (the least disturbed sample, for a loaded machine).
4. **Pinned threads.** The caller pins the runtime's thread count (torch ``set_num_threads``,
   ONNX Runtime ``intra_op_num_threads``) and records it; single-threaded runs may time the
   thread's CPU time (:func:`dse.cost.microbench.timer`), which other processes' slices do not
   inflate.

Samples come in *passes*: a pass times every group of items (a group is warmed up, then its
items are sampled round robin: the exits of one network run warm, as deployed). The samples of
an item are split in time into two halves (the first half of the passes and the second):
**repeatability** is the share of items whose two halves' statistics agree within +-10 %
(:func:`repeatability`), the ceiling of any model's "within +-10 %" on this machine at this time.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

Clock = Callable[[], float]


def trimmed_mean(samples: Sequence[float], trim: float = 0.2) -> float:
    """Mean of the samples left after dropping ``floor(trim * n)`` from each end (sorted)."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    k = int(trim * len(xs))
    kept = xs[k:len(xs) - k] or xs
    return sum(kept) / len(kept)


#: Statistic of an item's samples (a robust one: a few disturbed samples do not move it).
STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": statistics.median,  # the default: the typical sample
    "trimmed": trimmed_mean,      # mean of the middle 60 %
    "min": min,                   # the least disturbed sample (a loaded machine)
}


def get_statistic(name: str) -> Callable[[Sequence[float]], float]:
    """The statistic called ``name``; unknown names list the valid ones."""
    if name not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {name!r}")
    return STATISTICS[name]


def inner_counts(fns: Sequence[Callable[[], Any]], target_s: float, warmup: int = 2,
                 max_inner: int = 20000) -> list[int]:
    """Calls per sample of each function: ``target_s`` / one call's wall time (after warm-up)."""
    counts = []
    for fn in fns:
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        counts.append(max(1, min(max_inner, int(target_s / max(time.perf_counter() - t0, 1e-7)))))
    return counts


def round_robin(fns: Sequence[Callable[[], Any]], rounds: int, inner: Sequence[int],
                clock: Clock = time.perf_counter) -> list[list[float]]:
    """Seconds per call of every function in every round: round r samples fn 0, 1, ... in turn."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = clock()
            for _ in range(inner[i]):
                fn()
            samples[i].append((clock() - t0) / inner[i])
    return samples


@dataclass(frozen=True)
class Timing:
    """The samples of every item, by pass, and what the harness reports from them."""

    samples: list[list[list[float]]]  # [item][pass] -> seconds per call of each sample
    statistic: str

    def seconds(self) -> list[float]:
        """The statistic of all of an item's samples."""
        stat = get_statistic(self.statistic)
        return [stat([s for p in passes for s in p]) for passes in self.samples]

    def halves(self) -> tuple[list[float], list[float]]:
        """The statistic of the first half of the passes and of the second half, per item."""
        stat = get_statistic(self.statistic)
        first, second = [], []
        for passes in self.samples:
            cut = max(1, len(passes) // 2)
            a = [s for p in passes[:cut] for s in p]
            b = [s for p in passes[cut:] for s in p] or a
            first.append(stat(a))
            second.append(stat(b))
        return first, second

    def repeatability(self, tolerance: float = 0.10) -> float:
        """Share of items whose two halves agree within +-``tolerance`` (:func:`repeatability`)."""
        return repeatability(*self.halves(), tolerance=tolerance)


def time_groups(groups: Sequence[Sequence[Callable[[], Any]]], *, rounds: int, passes: int,
                target_s: float, clock: Clock = time.perf_counter, statistic: str = "median",
                warmup: int = 2, log: Callable[[str], None] = lambda _: None) -> Timing:
    """Time every function of every group: ``rounds`` samples each, spread over ``passes``.

    Each pass visits the groups in turn; a group is warmed up (``warmup`` calls of each function)
    and its functions are then sampled round robin (:func:`round_robin`), ``rounds / passes``
    rounds per pass. The inner count of every function is fixed once, before the first pass.
    """
    get_statistic(statistic)  # an unknown name fails before minutes of timing
    passes = max(1, min(passes, rounds))
    per_pass = max(1, round(rounds / passes))
    inner = [inner_counts(fns, target_s, warmup) for fns in groups]
    samples: list[list[list[float]]] = [[] for fns in groups for _ in fns]
    for p in range(passes):
        log(f"pass {p + 1}/{passes}: timing {len(samples)} items in {len(groups)} group(s)")
        i = 0
        for fns, counts in zip(groups, inner):
            if p:  # the first pass was warmed up by inner_counts
                for fn in fns:
                    for _ in range(warmup):
                        fn()
            for j, s in enumerate(round_robin(fns, per_pass, counts, clock)):
                samples[i + j].append(s)
            i += len(fns)
    return Timing(samples, statistic)


def repeatability(first: Sequence[float], second: Sequence[float],
                  tolerance: float = 0.10) -> float:
    """Share of items whose second measurement is within +-``tolerance`` of the first.

    ``|second / first - 1| <= tolerance``, the same test as a model's "within +-10 %" with the
    first measurement in the place of the truth. No model can agree with a measurement more
    often than the measurement agrees with itself.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"need two equally long, non-empty lists, got {len(first)} and {len(second)}")
    agree = sum(abs(b / a - 1.0) <= tolerance + 1e-12 for a, b in zip(first, second))
    return agree / len(first)
