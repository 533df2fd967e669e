"""Budget calibration: thresholds that meet a cost budget on val, then measured on test.

This is the budgeted-batch protocol of MSDNet (Huang et al., ICLR 2018) as IMTA (Li et al.,
ICCV 2019) implements it (``dynamic_eval_find_threshold``): for q > 0, assume the exit
probabilities follow a geometric law p_k = q^k / sum_{j=1..E} q^j; walking the early exits in
order, the threshold of exit k is the score of the floor(N p_k)-th most confident val input
among those still in the network. That gives one per-exit threshold vector per q; we add a
sweep of global thresholds, keep every candidate whose expected val cost <= budget and return
the one with the best val accuracy (ties: the cheaper). ``budget_curve`` repeats this for each
budget and measures the chosen thresholds on test, where the cost may land on either side of
the budget (that is what the protocol reports).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dse.errors import ConfigError
from dse.evaluation.metrics import cost_vector, evaluate
from dse.evaluation.outputs import ExitOutputs, oriented_thresholds
from dse.evaluation.sweep import sweep, sweep_per_exit

#: what a budget measures -> the unit suffix used in names and messages
KINDS = {"macs": "macs", "latency": "latency_ms", "energy": "energy_mj"}
#: q grid of the geometric exit-probability scheme (MSDNet uses q = 0.05 .. 2 in steps of 0.05)
DEFAULT_Q_GRID = np.geomspace(0.02, 50.0, 121)


@dataclass(frozen=True)
class Calibration:
    """Thresholds chosen on val for a budget, with their val metrics."""

    thresholds: np.ndarray   #: [E-1] per early exit, criterion's own orientation (may be +-inf)
    val_accuracy: float
    val_cost: float
    val_exit_fractions: np.ndarray  #: [E]


def geometric_exit_probs(q: Any, num_exits: int) -> np.ndarray:
    """[Q, E] exit probabilities p_k = q^k / sum_j q^j, k = 1..E (MSDNet's geometric law)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1, 1)
    logp = np.log(q) * np.arange(1, num_exits + 1)[None, :]
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def thresholds_for_exit_probs(outputs: ExitOutputs, criterion: str, probs: Any) -> np.ndarray:
    """[Q, E-1] per-exit thresholds making a fraction ``probs[q, k]`` of inputs leave at exit k.

    Exit k takes the floor(N p_k) most confident inputs still undecided (ties may take a few
    more; if fewer remain, all of them). Returned in the criterion's own orientation.
    """
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    scores = outputs.confidence_scores(criterion)  # exit iff >= t
    n, early = outputs.num_samples, outputs.num_exits - 1
    order = [np.argsort(-scores[k], kind="stable") for k in range(early)]
    ranked = [scores[k][order[k]] for k in range(early)]
    result = np.full((probs.shape[0], early), np.inf)
    for i, p in enumerate(probs):
        undecided = np.ones(n, dtype=bool)
        for k in range(early):
            want = int(np.floor(n * p[k] + 1e-9))
            running = np.cumsum(undecided[order[k]])
            if want <= 0 or running[-1] == 0:
                continue
            pos = min(int(np.searchsorted(running, min(want, running[-1]), side="left")), n - 1)
            result[i, k] = ranked[k][pos]
            undecided &= ~(scores[k] >= result[i, k])
    return oriented_thresholds(criterion, result)  # negation maps back for entropy


def calibrate(val: ExitOutputs, criterion: str, exit_costs: Sequence[float], budget: float, *,
              kind: str = "macs", scheme: str = "both", q_grid: Any = None,
              num_global: int = 512) -> Calibration:
    """Best-val-accuracy thresholds whose expected val cost is <= ``budget``.

    ``scheme``: ``geometric`` (MSDNet per-exit thresholds over ``q_grid``), ``global`` (one
    threshold for all exits: every distinct val score, or ``num_global`` score quantiles when
    there are more, plus exit-all-early and exit-none-early) or ``both``.
    Raises ConfigError when no candidate meets the budget.
    """
    unit = _unit(kind)
    if not np.isfinite(budget) or budget <= 0:
        raise ConfigError(f"budget_{unit} must be a positive number, got {budget!r}")
    if scheme not in ("both", "global", "geometric"):
        raise ConfigError(f"calibration scheme must be 'both', 'global' or 'geometric', got {scheme!r}")
    costs = cost_vector(exit_costs, val.num_exits, f"exit_{unit}")
    early = val.num_exits - 1
    candidates, accuracy, cost, fractions = [], [], [], []

    def add(thresholds: np.ndarray, result: Any) -> None:
        candidates.append(thresholds)
        accuracy.append(result.accuracy)
        fractions.append(result.exit_fractions)
        cost.append(result.exit_fractions @ costs)

    if scheme in ("both", "global") or early == 0:
        grid = np.unique(val.confidence_scores(criterion))  # every distinct outcome ...
        if grid.size > num_global:  # ... or score quantiles when there are too many
            grid = np.unique(np.quantile(grid, np.linspace(0, 1, num_global)))
        grid = np.concatenate([[-np.inf], grid, [np.inf]])
        t = oriented_thresholds(criterion, grid)
        add(np.repeat(t[:, None], early, axis=1), sweep(val, criterion, t))
    if scheme in ("both", "geometric") and early > 0:
        q = DEFAULT_Q_GRID if q_grid is None else np.asarray(q_grid, dtype=np.float64)
        t = thresholds_for_exit_probs(val, criterion, geometric_exit_probs(q, val.num_exits))
        add(t, sweep_per_exit(val, criterion, t))

    thresholds = np.concatenate(candidates)
    acc, cst, frac = np.concatenate(accuracy), np.concatenate(cost), np.concatenate(fractions)
    feasible = np.flatnonzero(cst <= budget * (1 + 1e-12))
    if feasible.size == 0:
        raise ConfigError(f"budget_{unit} {budget:g} is below the cheapest operating point on val "
                          f"({cst.min():g} {unit}: every input leaving as early as possible)")
    best = feasible[np.lexsort((cst[feasible], -acc[feasible]))[0]]
    return Calibration(thresholds[best], float(acc[best]), float(cst[best]), frac[best])


def calibrate_budget(val: ExitOutputs, criterion: str, exit_costs: Sequence[float],
                     budget: float, kind: str = "macs", **options: Any) -> np.ndarray:
    """[E-1] thresholds meeting ``budget`` on val (see :func:`calibrate`)."""
    return calibrate(val, criterion, exit_costs, budget, kind=kind, **options).thresholds


def budget_curve(val: ExitOutputs, test: ExitOutputs, criterion: str, exit_costs: Sequence[float],
                 budgets: Sequence[float], kind: str = "macs", **options: Any):
    """One row per budget: thresholds calibrated on val, accuracy and cost measured on test.

    Returns a pandas DataFrame with columns ``budget_<unit>``, ``val_accuracy``,
    ``val_expected_<unit>``, ``test_accuracy``, ``test_expected_<unit>``, ``thresholds`` and
    ``test_exit_fractions`` (tuples).
    """
    import pandas as pd

    unit = _unit(kind)
    costs = cost_vector(exit_costs, test.num_exits, f"exit_{unit}")
    rows = []
    for budget in budgets:
        cal = calibrate(val, criterion, exit_costs, float(budget), kind=kind, **options)
        res = evaluate(test, criterion, cal.thresholds)
        rows.append({
            f"budget_{unit}": float(budget),
            "val_accuracy": cal.val_accuracy,
            f"val_expected_{unit}": cal.val_cost,
            "test_accuracy": res.accuracy,
            f"test_expected_{unit}": float(res.exit_fractions @ costs),
            "thresholds": tuple(float(x) for x in cal.thresholds),
            "test_exit_fractions": tuple(float(x) for x in res.exit_fractions),
        })
    return pd.DataFrame(rows)


def _unit(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"budget kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind]
