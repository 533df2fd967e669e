"""Vectorised threshold sweeps on cached outputs: many thresholds at once, numpy only.

Global threshold t (scores oriented so an input exits at exit e iff s_e >= t): with the running
maximum M_e = max_{j<=e} s_j, an input leaves at exit e iff M_{e-1} < t <= M_e, and at the final
exit iff M_{E-2} < t. So for every t

    #inputs leaving at exits <= e    = #{n : M_e[n] >= t}
    #right answers at exit e         = #{n right at e : M_e[n] >= t} - #{n right at e : M_{e-1}[n] >= t}

and each count is a ``searchsorted`` of all T thresholds in one sorted array: O(E N log N +
E T log N) instead of a [T, E, N] comparison. Per-exit thresholds ([T, E-1]) use a
[T, N] pass per exit (:func:`sweep_per_exit`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dse.evaluation.metrics import expected_cost
from dse.evaluation.outputs import ExitOutputs, oriented_thresholds

#: [T, N] work arrays of sweep_per_exit are processed in chunks of about this many elements
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class SweepResult:
    """Metrics for T threshold choices (criterion's own orientation)."""

    thresholds: np.ndarray      #: [T] global or [T, E-1] per early exit
    accuracy: np.ndarray        #: [T]
    exit_fractions: np.ndarray  #: [T, E]
    expected_macs: np.ndarray | None = None
    expected_latency_ms: np.ndarray | None = None
    expected_energy_mj: np.ndarray | None = None


def _count_ge(sorted_values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For every t: how many values are >= t (``sorted_values`` ascending)."""
    return sorted_values.size - np.searchsorted(sorted_values, t, side="left")


def _sorted_tables(outputs: ExitOutputs, criterion: str) -> tuple[list, list, list]:
    """Sorted running maxima, and the same restricted to inputs each exit gets right (cached)."""
    key = ("sweep_tables", criterion)
    if key not in outputs._cache:
        running_max = np.maximum.accumulate(outputs.confidence_scores(criterion), axis=0)
        correct = outputs.correct()
        all_sorted = [np.sort(m) for m in running_max]
        upper, lower = [], []  # per exit e: sorted M_e and M_{e-1} over inputs right at e
        for e in range(outputs.num_exits):
            right = correct[e]
            upper.append(np.sort(running_max[e][right]) if e < outputs.num_exits - 1 else None)
            lower.append(np.sort(running_max[e - 1][right]) if e > 0 else None)
        outputs._cache[key] = (all_sorted, upper, lower)
    return outputs._cache[key]


def sweep(outputs: ExitOutputs, criterion: str, thresholds: Any,
          exit_macs: Sequence[float] | None = None, exit_latency_ms: Sequence[float] | None = None,
          exit_energy_mj: Sequence[float] | None = None) -> SweepResult:
    """Accuracy, exit fractions and expected costs for T global thresholds at once."""
    raw = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    t = oriented_thresholds(criterion, raw)
    num_exits, n = outputs.num_exits, outputs.num_samples
    correct = outputs.correct()
    all_sorted, upper, lower = _sorted_tables(outputs, criterion)

    cumulative = np.empty((t.size, num_exits), dtype=np.int64)
    for e in range(num_exits - 1):
        cumulative[:, e] = _count_ge(all_sorted[e], t)
    cumulative[:, -1] = n
    counts = np.diff(cumulative, axis=1, prepend=0)

    right = np.zeros(t.size, dtype=np.int64)
    for e in range(num_exits):
        right += _count_ge(upper[e], t) if upper[e] is not None else int(correct[e].sum())
        if lower[e] is not None:
            right -= _count_ge(lower[e], t)
    return _result(raw, right / max(n, 1), counts / max(n, 1), exit_macs, exit_latency_ms,
                   exit_energy_mj)


def assign_many(outputs: ExitOutputs, criterion: str, thresholds: np.ndarray) -> np.ndarray:
    """int8/int16 [T, N] exit index for T per-exit threshold vectors ([T, E-1], own orientation)."""
    t = oriented_thresholds(criterion, thresholds)
    scores = outputs.confidence_scores(criterion)
    num_exits, n = outputs.num_exits, outputs.num_samples
    dtype = np.int8 if num_exits < 127 else np.int16
    exit_index = np.full((t.shape[0], n), num_exits - 1, dtype=dtype)
    for e in range(num_exits - 2, -1, -1):  # later exits first; earlier ones overwrite
        fires = scores[e][None, :] >= t[:, e, None]
        exit_index[fires] = e
    return exit_index


def sweep_per_exit(outputs: ExitOutputs, criterion: str, thresholds: Any,
                   exit_macs: Sequence[float] | None = None,
                   exit_latency_ms: Sequence[float] | None = None,
                   exit_energy_mj: Sequence[float] | None = None) -> SweepResult:
    """Like :func:`sweep` for T per-exit threshold vectors given as a [T, E-1] array."""
    num_exits, n = outputs.num_exits, outputs.num_samples
    raw = np.asarray(thresholds, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != num_exits - 1:
        raise ValueError(f"per-exit thresholds must be [T, {num_exits - 1}], got shape {raw.shape}")
    correct = outputs.correct()
    counts = np.zeros((raw.shape[0], num_exits), dtype=np.int64)
    right = np.zeros(raw.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for lo in range(0, raw.shape[0], step):
        exit_index = assign_many(outputs, criterion, raw[lo:lo + step])
        for e in range(num_exits):
            here = exit_index == e
            counts[lo:lo + step, e] = here.sum(axis=1)
            right[lo:lo + step] += (here & correct[e][None, :]).sum(axis=1)
    return _result(raw, right / max(n, 1), counts / max(n, 1), exit_macs, exit_latency_ms,
                   exit_energy_mj)


def _result(thresholds: np.ndarray, accuracy: np.ndarray, fractions: np.ndarray,
            macs: Any, latency_ms: Any, energy_mj: Any) -> SweepResult:
    return SweepResult(thresholds, accuracy, fractions,
                       expected_cost(fractions, macs, "exit_macs"),
                       expected_cost(fractions, latency_ms, "exit_latency_ms"),
                       expected_cost(fractions, energy_mj, "exit_energy_mj"))


def random_outputs(n_samples: int = 10_000, n_exits: int = 6, n_classes: int = 10,
                   seed: int = 0) -> ExitOutputs:
    """Synthetic outputs whose later exits are more often right (benchmarks, tests)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    logits = rng.normal(0.0, 1.0, (n_exits, n_samples, n_classes)).astype(np.float32)
    signal = np.linspace(0.5, 3.0, n_exits, dtype=np.float32)[:, None]
    logits[:, np.arange(n_samples), labels] += signal * rng.uniform(0, 2, (n_exits, n_samples))
    conf = rng.uniform(0.0, 1.0, (n_exits, n_samples)).astype(np.float32)
    conf[-1] = 1.0
    return ExitOutputs(logits, conf, labels)


def sweep_benchmark(n_samples: int = 10_000, n_exits: int = 6, n_classes: int = 10,
                    n_thresholds: int = 1000, seed: int = 0, repeats: int = 5,
                    criterion: str = "maxprob") -> float:
    """Median wall time (ms) of one :func:`sweep` of ``n_thresholds`` global thresholds.

    Each run starts from fresh (uncached) outputs, so criterion scores, correctness and the
    sorted tables are part of the measured time.
    """
    thresholds = np.linspace(0.0, 1.0, n_thresholds)
    exit_macs = np.linspace(1.0, float(n_exits), n_exits)
    times = []
    for r in range(repeats):
        outputs = random_outputs(n_samples, n_exits, n_classes, seed + r)
        start = time.perf_counter()
        sweep(outputs, criterion, thresholds, exit_macs)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))
