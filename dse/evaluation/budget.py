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
from dse.evaluation.outputs import ExitOutputs
from dse.evaluation.retune import best_under, operating_points

#: what a budget measures -> the unit suffix used in names and messages
KINDS = {"macs": "macs", "latency": "latency_ms", "energy": "energy_mj"}


@dataclass(frozen=True)
class Calibration:
    """Thresholds chosen on val for a budget, with their val metrics."""

    thresholds: np.ndarray   #: [E-1] per early exit, criterion's own orientation (may be +-inf)
    val_accuracy: float
    val_cost: float
    val_exit_fractions: np.ndarray  #: [E]


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
    cost_vector(exit_costs, val.num_exits, f"exit_{unit}")  # the message names the unit
    p = operating_points(val, criterion, exit_costs, scheme=scheme, q_grid=q_grid,
                         num_global=num_global)
    best = best_under(p, budget)
    if best is None:
        raise ConfigError(f"budget_{unit} {budget:g} is below the cheapest operating point on val "
                          f"({p.cost.min():g} {unit}: every input leaving as early as possible)")
    return Calibration(p.thresholds[best], float(p.accuracy[best]), float(p.cost[best]),
                       p.exit_fractions[best])


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
