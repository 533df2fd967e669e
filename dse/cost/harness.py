"""The repeatable timing harness of ``dse profile calibrate`` and ``validate`` (any runtime).

A latency measured on a shared machine drifts: other processes take time slices, evict caches
and change the clock. Five habits make two measurements of the same thing agree
(nn-Meter, Zhang et al., MobiSys 2021, and HELP, Lee et al., NeurIPS 2021, time on dedicated
devices; a host shared by several users needs them all):

1. **Round robin.** Every round samples every item once, in turn (``item 0, item 1, ...,
   item 0, item 1, ...``), so slow drift and a burst of load hit one round of every item alike
   rather than every round of a few items.
2. **Many short samples.** One sample is an inner loop of calls lasting about ``target_s``
   (the inner count is fixed per item before timing starts), and an item gets many samples.
3. **A robust statistic** of the samples: the median (default), the 20 %-trimmed mean, the
   lower quartile, or the minimum (the least disturbed sample, for a loaded machine).
4. **Pinned threads.** The caller pins the runtime's thread count (torch ``set_num_threads``,
   ONNX Runtime ``intra_op_num_threads``) and records it; single-threaded runs may time the
   thread's CPU time (:func:`dse.cost.microbench.timer`), which other processes' slices do not
   inflate. The garbage collector is off while timing. The thread is not pinned to a core:
   tried and dropped (2026-12-01), opening every round on the vCPU whose reference sample was
   the faster. The slow state hits one vCPU at a time as often as both, but in three pairs of
   full runs it did no better than the scheduler's choice (docs/latency-model.md).
5. **Reference units** (our choice, for a virtual machine whose speed swings). On the 2-core
   VM this was built on, a fixed 3x3 convolution took 80-190 us per call, in states lasting
   seconds to minutes, even in CPU time: its virtual cores share physical ones with whatever
   else runs. No clock removes that (hardware cycle counters are not exposed to it:
   ``perf_event_open`` for cycles fails with ENOENT), and a minimum or low quantile did not
   either (in four trial runs the minimum kept 39-97 % of items' two halves within +-10 %:
   the fast state is not in every stretch of a run). Under heavy load a network still slows
   down more than the reference, so two runs at different loads can disagree by more than
   +-10 % in reference units too. So every sample is bracketed by
   short samples of a fixed reference kernel (:func:`round_robin`) and counted in reference
   units, ``sample / local reference``, the local reference being the median of the few
   reference samples around it (:func:`local_reference`), then converted back to seconds at
   one fixed reference time (:class:`Timing`): calibration records it in the profile
   (``reference_us``) and validation converts at the same one, so calibration and validation
   report at the same speed of the machine whatever its state during each. The cost: one
   reference sample (about 0.5 ms) per sample; an op whose slowdown differs from the
   reference's (memory-bound rather than compute-bound) is corrected only in part.

Samples come in *passes*: a pass times every group of items (a group is warmed up, then its
items are sampled round robin: the exits of one network run warm, as deployed). The samples of
an item are split in time into two halves (the first half of the passes and the second):
**repeatability** is the share of items whose two halves' statistics agree within +-10 %
(:func:`repeatability`), the ceiling of any model's "within +-10 %" on this machine at this time.
With reference units, the two measurements compared are the two halves in reference units
(converted at the same reference time); :meth:`Timing.raw` gives the same test in plain
seconds.
"""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

Clock = Callable[[], float]


def trimmed_mean(samples: Sequence[float], trim: float = 0.2) -> float:
    """Mean of the samples left after dropping ``floor(trim * n)`` from each end (sorted)."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    k = int(trim * len(xs))
    kept = xs[k:len(xs) - k] or xs
    return sum(kept) / len(kept)


def lower_quartile(samples: Sequence[float]) -> float:
    """The 25th percentile, linearly interpolated (numpy's default ``quantile``: position
    ``0.25 * (n - 1)`` of the sorted samples)."""
    if len(samples) == 0:
        raise ValueError("no samples")
    return float(np.quantile(np.asarray(samples, dtype=np.float64), 0.25))


#: The "within +-10 %" bound: two measurements agree (:func:`repeatability`), and a model's
#: prediction is close enough to its measurement (dse.cost.validation_stats), when they differ
#: by at most this fraction.
WITHIN = 0.10

#: Statistic of an item's samples (a robust one: a few disturbed samples do not move it).
STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": statistics.median,  # the default: the typical sample
    "trimmed": trimmed_mean,      # mean of the middle 60 %
    "q25": lower_quartile,        # the lower quartile: a machine that swings between speeds
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


def _sample(fn: Callable[[], Any], inner: int, clock: Clock) -> float:
    """Seconds per call of ``inner`` back-to-back calls of ``fn``."""
    t0 = clock()
    for _ in range(inner):
        fn()
    return (clock() - t0) / inner


def round_robin(fns: Sequence[Callable[[], Any]], rounds: int, inner: Sequence[int],
                clock: Clock = time.perf_counter, reference: Callable[[], Any] | None = None,
                reference_inner: int = 1,
                trace: list[float] | None = None) -> tuple[list[list[float]], list[list[int]]]:
    """Seconds per call of every function in every round: round r samples fn 0, 1, ... in turn.

    With a ``reference``, a reference sample opens every round and follows every function's
    sample, so each sample is bracketed by two; the reference samples (seconds per call) are
    appended to ``trace`` in time order and the second list holds, per sample, the index in
    ``trace`` of the reference sample right after it (else it is empty).
    """
    samples: list[list[float]] = [[] for _ in fns]
    after: list[list[int]] = [[] for _ in fns] if reference is not None else []
    trace = [] if trace is None else trace
    for _ in range(rounds):
        if reference is not None:
            trace.append(_sample(reference, reference_inner, clock))
        for i, fn in enumerate(fns):
            samples[i].append(_sample(fn, inner[i], clock))
            if reference is not None:
                trace.append(_sample(reference, reference_inner, clock))
                after[i].append(len(trace) - 1)
    return samples, after


def local_reference(trace: Sequence[float], after: int, half_width: int) -> float:
    """The reference's speed around a sample: the median of the ``half_width + 1`` reference
    samples before it and the ``half_width + 1`` after it (``trace[after]`` is the first after
    it; fewer at the ends of the run). ``half_width=0``: the mean of the two that bracket it.

    One short reference sample is noisy (a time slice, a cache miss); the machine's speed
    swings over seconds, so a few neighbours on either side estimate it better.
    """
    return statistics.median(trace[max(0, after - 1 - half_width):after + 1 + half_width])


# Tried and dropped (2026-12-01): counting each item at its own elasticity, sample x
# (reference_s / local reference) ** e with e the item's within-run slope of log(sample) on
# log(reference). It helped runs that crossed states and cost up to 8 points in a steady run,
# where a slope within a run did not say how an item moves between runs
# (docs/latency-model.md has the numbers).
@dataclass(frozen=True)
class Timing:
    """The samples of every item, by pass, and what the harness reports from them.

    With reference samples (``references``, the same shape as ``samples``), a sample counts in
    *reference units*, ``sample / reference``, converted back to seconds at the one fixed
    reference time ``reference_s``: ``value = sample / reference * reference_s``.
    """

    samples: list[list[list[float]]]  # [item][pass] -> seconds per call of each sample
    statistic: str
    references: list[list[list[float]]] | None = None  # [item][pass] -> reference s per call
    reference_s: float | None = None  # seconds per reference call the values are converted at

    def _values(self, item: int, passes: slice = slice(None)) -> list[float]:
        """An item's samples in the chosen passes (in reference units x ``reference_s``)."""
        xs = [s for p in self.samples[item][passes] for s in p]
        if self.references is None:
            return xs
        refs = [r for p in self.references[item][passes] for r in p]
        scale = self.reference_s if self.reference_s is not None else 1.0
        return [x / r * scale for x, r in zip(xs, refs)]

    def seconds(self) -> list[float]:
        """The statistic of all of an item's samples."""
        stat = get_statistic(self.statistic)
        return [stat(self._values(i)) for i in range(len(self.samples))]

    def halves(self) -> tuple[list[float], list[float]]:
        """The statistic of the first half of the passes and of the second half, per item."""
        stat = get_statistic(self.statistic)
        first, second = [], []
        for i, passes in enumerate(self.samples):
            cut = max(1, len(passes) // 2)
            a = self._values(i, slice(0, cut))
            b = self._values(i, slice(cut, None)) or a
            first.append(stat(a))
            second.append(stat(b))
        return first, second

    def repeatability(self, tolerance: float = WITHIN) -> float:
        """Share of items whose two halves agree within +-``tolerance`` (:func:`repeatability`)."""
        return repeatability(*self.halves(), tolerance=tolerance)

    def reference_now_s(self) -> float | None:
        """Median seconds per reference call over this run's reference samples (None without
        references): the machine's speed now, to compare with ``reference_s``."""
        if self.references is None:
            return None
        refs = [r for item in self.references for p in item for r in p]
        return float(np.median(refs)) if refs else None

    def raw(self) -> Timing:
        """The same samples in plain seconds (no reference normalisation)."""
        return Timing(self.samples, self.statistic)

    def items(self, start: int, stop: int | None = None,
              reference_s: float | None = None) -> Timing:
        """Items ``start:stop`` alone (timed in this run, so in its machine states), converted
        at ``reference_s`` when given (default: this run's): the share of a run that timed two
        sets of items together (:func:`time_groups` with both sets' groups)."""
        refs = None if self.references is None else self.references[start:stop]
        return Timing(self.samples[start:stop], self.statistic, refs,
                      self.reference_s if reference_s is None else reference_s)


#: Reference kernels by name: (channels, side) of a 3x3 convolution at batch 1. A profile
#: records the one it was calibrated with (``reference``), and validation brackets with that
#: same one. Which tracks a network best depends on the network: in a 270 s monitor of the
#: 2-core VM's slow state (standard deviation of log(network / reference), 16x16 / 32x32 /
#: plain seconds) digits-resnet gave 0.103 / 0.121 / 0.223 and ResNet-18 at 224 px 0.154 /
#: 0.076 / 0.080. The default stays the kernel every earlier measurement used (our choice, until
#: runs at rest say otherwise). Tried and dropped, with full runs measured: the 32x32 kernel as
#: default, a mixed reference (16x16 twice, 32x32 once per call) and a memory part (an add over
#: 12 MB beside the convolution, whose own time depended on what ran before it);
#: docs/latency-model.md has every run.
REFERENCES = {"conv3x3-32c-16px": (32, 16), "conv3x3-32c-32px": (32, 32)}
DEFAULT_REFERENCE = "conv3x3-32c-16px"
#: The reference of profiles calibrated before profiles named theirs.
LEGACY_REFERENCE = "conv3x3-32c-16px"


#: Largest factor between two reference times (calibration and validation, or calibration's
#: snapshot and its run median) taken as one machine state (our choice: the 2-core VM this
#: was built on swings by up to 2x between states).
SPEED_TOLERANCE = 1.2


def moved(ratio: float) -> bool:
    """Whether a ratio of two reference times is beyond :data:`SPEED_TOLERANCE` either way."""
    return not 1 / SPEED_TOLERANCE <= ratio <= SPEED_TOLERANCE


def time_groups(groups: Sequence[Sequence[Callable[[], Any]]], *, rounds: int, passes: int,
                target_s: float, clock: Clock = time.perf_counter, statistic: str = "median",
                warmup: int = 2, log: Callable[[str], None] = lambda _: None,
                reference: Callable[[], Any] | None = None, reference_s: float | None = None,
                reference_target_s: float = 5e-4, reference_window: int = 10) -> Timing:
    """Time every function of every group: ``rounds`` samples each, spread over ``passes``.

    Each pass visits the groups in turn; a group is warmed up (``warmup`` calls of each function)
    and its functions are then sampled round robin (:func:`round_robin`), ``rounds / passes``
    rounds per pass. The inner count of every function is fixed once, before the first pass.
    With a ``reference`` function, every sample is bracketed by reference samples of about
    ``reference_target_s`` and counted in reference units (:class:`Timing`) against the local
    reference (:func:`local_reference` with ``reference_window``), converted back at
    ``reference_s`` (default: the median of this run's reference samples). The garbage
    collector is off while timing (a collection inside one sample is a disturbance of that
    sample alone).
    """
    get_statistic(statistic)  # an unknown name fails before minutes of timing
    passes = max(1, min(passes, rounds))
    per_pass = max(1, round(rounds / passes))
    inner = [inner_counts(fns, target_s, warmup) for fns in groups]
    ref_inner = inner_counts([reference], reference_target_s, warmup)[0] if reference else 1
    samples: list[list[list[float]]] = [[] for fns in groups for _ in fns]
    after: list[list[list[int]]] = [[] for _ in samples]
    trace: list[float] = []  # every reference sample, in time order
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for p in range(passes):
            log(f"pass {p + 1}/{passes}: timing {len(samples)} items in {len(groups)} group(s)")
            i = 0
            for fns, counts in zip(groups, inner):
                if p:  # the first pass was warmed up by inner_counts
                    for fn in fns:
                        for _ in range(warmup):
                            fn()
                got, got_after = round_robin(fns, per_pass, counts, clock, reference, ref_inner,
                                             trace)
                for j, s in enumerate(got):
                    samples[i + j].append(s)
                    if reference is not None:
                        after[i + j].append(got_after[j])
                i += len(fns)
    finally:
        if was_enabled:
            gc.enable()
    if reference is None:
        return Timing(samples, statistic)
    refs = [[[local_reference(trace, k, reference_window) for k in p] for p in item]
            for item in after]
    if reference_s is None:
        reference_s = statistics.median(trace)
    return Timing(samples, statistic, refs, reference_s)


def repeatability(first: Sequence[float], second: Sequence[float],
                  tolerance: float = WITHIN) -> float:
    """Share of items whose second measurement is within +-``tolerance`` of the first.

    ``|second / first - 1| <= tolerance``, the same test as a model's "within +-10 %" with the
    first measurement in the place of the truth. No model can agree with a measurement more
    often than the measurement agrees with itself.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"need two equally long, non-empty lists, got {len(first)} and {len(second)}")
    agree = sum(abs(b / a - 1.0) <= tolerance + 1e-12 for a, b in zip(first, second))
    return agree / len(first)
