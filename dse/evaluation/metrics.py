"""Early-exit metrics of one threshold choice on cached outputs.

An input leaves at the first early exit whose criterion fires (``learned``/``maxprob``: score
>= T_n, ``entropy``: score <= T_n) and at the final exit otherwise. With p_n the fraction of
inputs leaving at exit n:

- accuracy = fraction of inputs whose exit's prediction is right;
- per-exit (anytime) accuracy = accuracy of exit n when every input is forced through it;
- expected cost = sum_n p_n * cost_n, for MACs, latency (ms) and energy (mJ), where cost_n is
  the cumulative cost of leaving at exit n (backbone to that exit plus branches 1..n).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dse.evaluation.outputs import ExitOutputs, per_exit_thresholds
from dse.models.criteria import CRITERIA


def exit_assignment(outputs: ExitOutputs, criterion: str, thresholds: Any) -> np.ndarray:
    """int64 [N]: 0-based exit index of every input (E-1 = the final exit).

    ``thresholds`` is one global value or one per early exit. Uses the criterion's own
    ``exits_np`` rule; the vectorised sweeps are tested equal to this.
    """
    crit = CRITERIA.get(criterion)
    num_exits, n = outputs.num_exits, outputs.num_samples
    t = per_exit_thresholds(thresholds, num_exits - 1)
    scores = outputs.scores(criterion)
    exit_index = np.full(n, num_exits - 1, dtype=np.int64)
    undecided = np.ones(n, dtype=bool)
    for e in range(num_exits - 1):
        fires = crit.exits_np(scores[e], t[e]) & undecided
        exit_index[fires] = e
        undecided &= ~fires
    return exit_index


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one (criterion, thresholds) choice. Arrays have one entry per exit."""

    accuracy: float
    exit_fractions: np.ndarray       #: [E] fraction of inputs leaving at each exit
    per_exit_accuracy: np.ndarray    #: [E] anytime accuracy (every input through exit e)
    exit_accuracy: np.ndarray        #: [E] accuracy of the inputs that left at exit e (nan if none)
    expected_macs: float | None
    expected_latency_ms: float | None = None
    expected_energy_mj: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (lists and floats; nan becomes None)."""
        def clean(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return [None if np.isnan(x) else float(x) for x in v]
            return v if v is None else float(v)
        return {k: clean(getattr(self, k)) for k in self.__dataclass_fields__}

    def section(self) -> dict[str, Any]:
        """The ``val`` / ``test`` section of every command's JSON and ``metrics.json``
        (:data:`SECTION_KEYS`): accuracy in percent, exit fractions as fractions (0-1), MACs as
        counts, latency in ms, energy in mJ (None where not computed)."""
        d = self.to_dict()
        for key in ("accuracy", "per_exit_accuracy", "exit_accuracy"):
            d[key] = percent(d[key])
        d["mean_anytime_accuracy"] = percent(float(np.nanmean(self.per_exit_accuracy))
                                             if self.per_exit_accuracy.size else None)
        return {k: d[k] for k in SECTION_KEYS}


#: keys of a ``val`` / ``test`` section, the same in every command's JSON
SECTION_KEYS = ("accuracy", "per_exit_accuracy", "mean_anytime_accuracy", "exit_accuracy",
                "exit_fractions", "expected_macs", "expected_latency_ms", "expected_energy_mj")


def percent(value: Any) -> Any:
    """A fraction (0-1), a list of them, or None -> percent (0-100); dse reports accuracy in
    percent everywhere (JSON, CSV, YAML, report)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [percent(v) for v in value]
    v = float(value)
    return None if np.isnan(v) else 100.0 * v


def evaluate(outputs: ExitOutputs, criterion: str, thresholds: Any,
             exit_macs: Sequence[float] | None = None, exit_latency_ms: Sequence[float] | None = None,
             exit_energy_mj: Sequence[float] | None = None) -> EvalResult:
    """Accuracy, exit distribution, anytime accuracy and expected costs of one threshold choice."""
    num_exits, n = outputs.num_exits, outputs.num_samples
    exit_index = exit_assignment(outputs, criterion, thresholds)
    correct = outputs.correct()
    taken = correct[exit_index, np.arange(n)]
    counts = np.bincount(exit_index, minlength=num_exits)
    right = np.bincount(exit_index, weights=taken, minlength=num_exits)
    fractions = counts / max(n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        exit_acc = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
    return EvalResult(
        accuracy=float(taken.mean()) if n else float("nan"),
        exit_fractions=fractions,
        per_exit_accuracy=correct.mean(axis=1) if n else np.full(num_exits, np.nan),
        exit_accuracy=exit_acc,
        expected_macs=expected_cost(fractions, exit_macs, "exit_macs"),
        expected_latency_ms=expected_cost(fractions, exit_latency_ms, "exit_latency_ms"),
        expected_energy_mj=expected_cost(fractions, exit_energy_mj, "exit_energy_mj"),
    )


def cost_vector(costs: Sequence[float] | None, num_exits: int, name: str) -> np.ndarray | None:
    """float64 [E] or None; checks there is one cost per exit, the final one included."""
    if costs is None:
        return None
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    if c.shape != (num_exits,):
        raise ValueError(f"{name}: expected {num_exits} values (one per exit, final included), "
                         f"got {c.size}")
    return c


def expected_cost(fractions: np.ndarray, costs: Sequence[float] | None, name: str) -> Any:
    """sum_n p_n cost_n; ``fractions`` is [E] (-> float) or [T, E] (-> [T]); None if no costs."""
    c = cost_vector(costs, fractions.shape[-1], name)
    if c is None:
        return None
    value = fractions @ c
    return float(value) if np.ndim(value) == 0 else value
