"""Re-tuning exit thresholds on val after full training: candidate operating points and the
two selection rules (numpy only).

The search chooses a configuration's thresholds on its proxy-trained exits. Full training
changes the exits (more steps, another seed, augmentation), so an exit can become more or less
confident at the same threshold and the configuration's design point moves. Re-tuning puts it
back on the trade-off the user asked for, using the val split only (test stays untouched).

Candidates (the operating points of :func:`operating_points`) are those of the budget
calibration (:mod:`dse.evaluation.budget`): one global threshold at every distinct val score
(or ``num_global`` score quantiles), exit-all-early and exit-none-early, plus MSDNet's
geometric per-exit thresholds (Huang et al., ICLR 2018, as IMTA implements it). With
``bounds`` every candidate is clipped into that range first (a config file holds thresholds
in [0, 1]) and measured *after* clipping, so the point chosen is the point the config gets.
Each candidate has its val accuracy and expected cost ``sum_n p_n c_n`` (c_n the cumulative
cost of leaving at exit n: MACs, latency in ms or energy in mJ).

Rules (:func:`best_under`, :func:`cheapest_within`, both in :func:`retune`):

- ``max_cost=C``: the highest val accuracy whose expected cost is <= C (ties: the cheaper);
- ``max_drop=Y``: the cheapest point whose val accuracy is within Y percentage points of the
  final exit's own val accuracy (ties: the more accurate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dse.errors import ConfigError
from dse.evaluation.geometric import (DEFAULT_Q_GRID, geometric_exit_probs,
                                      thresholds_for_exit_probs)
from dse.evaluation.metrics import cost_vector
from dse.evaluation.outputs import ExitOutputs, oriented_thresholds
from dse.evaluation.sweep import sweep, sweep_per_exit

#: the range of every exit criterion's score, hence of a config file's thresholds
CONFIG_BOUNDS = (0.0, 1.0)
#: relative slack on cost and accuracy comparisons (float sums of fractions times costs)
_SLACK = 1e-12


@dataclass(frozen=True)
class OperatingPoints:
    """T candidate threshold choices on one split and what each gives there."""

    thresholds: np.ndarray      #: [T, E-1] per early exit, criterion's own orientation
    accuracy: np.ndarray        #: [T] fraction
    cost: np.ndarray            #: [T] expected cost, the unit of the exit costs given
    exit_fractions: np.ndarray  #: [T, E]


@dataclass(frozen=True)
class Retuned:
    """The chosen point: its thresholds and what they give on val."""

    thresholds: tuple[float, ...]  #: one per early exit, or a single global value
    val_accuracy: float            #: fraction
    val_cost: float                #: expected cost on val, the unit of the exit costs
    exit_fractions: tuple[float, ...]
    rule: str                      #: "max_cost" or "max_drop"
    limit: float                   #: the cost limit, or the accuracy floor (fraction)


def operating_points(val: ExitOutputs, criterion: str, exit_costs: Sequence[float], *,
                     scheme: str = "both", q_grid: Any = None, num_global: int = 512,
                     bounds: tuple[float, float] | None = None,
                     extra: Any = None) -> OperatingPoints:
    """Every candidate of ``scheme`` (``global``, ``geometric`` or ``both``) on ``val``, then
    the per-exit threshold vectors in ``extra`` ([K, E-1]; e.g. the configured ones, so that
    re-tuning never does worse on val than keeping them).

    ``bounds``: clip each threshold into [low, high] (the criterion's own orientation) before
    measuring it; None keeps +-inf (exit all early / none early exactly).
    """
    if scheme not in ("both", "global", "geometric"):
        raise ConfigError(f"threshold scheme must be 'both', 'global' or 'geometric', got {scheme!r}")
    costs = cost_vector(exit_costs, val.num_exits, "exit_costs")
    early = val.num_exits - 1
    parts = []

    def clip(t: np.ndarray) -> np.ndarray:
        return t if bounds is None else np.clip(t, bounds[0], bounds[1])

    if scheme in ("both", "global") or early == 0:
        grid = np.unique(val.confidence_scores(criterion))  # every distinct outcome ...
        if grid.size > num_global:  # ... or score quantiles when there are too many
            grid = np.unique(np.quantile(grid, np.linspace(0, 1, num_global)))
        t = clip(oriented_thresholds(criterion, np.concatenate([[-np.inf], grid, [np.inf]])))
        r = sweep(val, criterion, t)
        parts.append((np.repeat(t[:, None], early, axis=1), r.accuracy, r.exit_fractions))
    if scheme in ("both", "geometric") and early > 0:
        q = DEFAULT_Q_GRID if q_grid is None else np.asarray(q_grid, dtype=np.float64)
        t = clip(thresholds_for_exit_probs(val, criterion, geometric_exit_probs(q, val.num_exits)))
        r = sweep_per_exit(val, criterion, t)
        parts.append((t, r.accuracy, r.exit_fractions))
    if extra is not None and early > 0:
        t = clip(np.asarray(extra, dtype=np.float64).reshape(-1, early))
        r = sweep_per_exit(val, criterion, t)
        parts.append((t, r.accuracy, r.exit_fractions))
    fractions = np.concatenate([p[2] for p in parts])
    return OperatingPoints(np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]), fractions @ costs, fractions)


def best_under(points: OperatingPoints, max_cost: float) -> int | None:
    """Index of the most accurate point with cost <= ``max_cost`` (ties: the cheaper, then the
    first); None when every point costs more."""
    feasible = np.flatnonzero(points.cost <= max_cost * (1 + _SLACK))
    if feasible.size == 0:
        return None
    return int(feasible[np.lexsort((points.cost[feasible], -points.accuracy[feasible]))[0]])


def cheapest_within(points: OperatingPoints, min_accuracy: float) -> int | None:
    """Index of the cheapest point with accuracy >= ``min_accuracy`` (ties: the more accurate,
    then the first); None when every point is less accurate."""
    feasible = np.flatnonzero(points.accuracy >= min_accuracy - _SLACK)
    if feasible.size == 0:
        return None
    return int(feasible[np.lexsort((-points.accuracy[feasible], points.cost[feasible]))[0]])


def retune(val: ExitOutputs, criterion: str, exit_costs: Sequence[float], *,
           max_cost: float | None = None, max_drop: float | None = None,
           unit: str = "latency_ms", **options: Any) -> Retuned:
    """Thresholds chosen on ``val`` by one rule: ``max_cost`` (most accurate within that expected
    cost) or ``max_drop`` (cheapest within that many percentage points of the final exit's own
    val accuracy). Thresholds are clipped into [0, 1] (:data:`CONFIG_BOUNDS`); ``options`` go
    to :func:`operating_points`. Raises ConfigError for a bad limit or when no point meets it;
    ``unit`` names the cost in that message."""
    if (max_cost is None) == (max_drop is None):
        raise ConfigError("give exactly one of max_cost and max_drop")
    if val.num_exits < 2:
        raise ConfigError("the model has no early exit: there is no threshold to tune")
    options.setdefault("bounds", CONFIG_BOUNDS)
    points = operating_points(val, criterion, exit_costs, **options)
    if max_cost is not None:
        if not np.isfinite(max_cost) or max_cost <= 0:
            raise ConfigError(f"the {unit} limit must be a finite number > 0, got {max_cost!r}")
        i, rule, limit = best_under(points, max_cost), "max_cost", float(max_cost)
        if i is None:
            raise ConfigError(f"no thresholds meet {max_cost:.6g} {unit} on val: the cheapest "
                              f"point costs {points.cost.min():.6g} {unit}")
    else:
        if not np.isfinite(max_drop) or max_drop < 0:
            raise ConfigError(f"max_drop must be a finite number >= 0 (percentage points), "
                              f"got {max_drop!r}")
        limit = float(val.correct()[-1].mean()) - max_drop / 100.0
        i, rule = cheapest_within(points, limit), "max_drop"
        if i is None:
            raise ConfigError(f"no thresholds keep val accuracy >= {100 * limit:.4g}% (the "
                              f"final exit's minus {max_drop:g} points)")
    return Retuned(compact(points.thresholds[i]), float(points.accuracy[i]),
                   float(points.cost[i]), tuple(float(x) for x in points.exit_fractions[i]),
                   rule, limit)


def compact(thresholds: Any) -> tuple[float, ...]:
    """Per-exit thresholds as a config holds them: one value when all are equal."""
    t = [float(x) for x in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    return (t[0],) if t and all(x == t[0] for x in t) else tuple(t)
