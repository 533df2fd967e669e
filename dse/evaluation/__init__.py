"""Evaluation of early-exit configurations on cached per-exit outputs (numpy only).

Per-exit logits and confidences are computed once per split (:class:`ExitOutputs`); exit
criteria, thresholds, metrics, vectorised threshold sweeps and budget calibration are then
pure numpy.
"""
from __future__ import annotations

from dse.evaluation.budget import Calibration, budget_curve, calibrate, calibrate_budget
from dse.evaluation.geometric import geometric_exit_probs, thresholds_for_exit_probs
from dse.evaluation.metrics import EvalResult, evaluate, exit_assignment, expected_cost
from dse.evaluation.outputs import ExitOutputs
from dse.evaluation.retune import OperatingPoints, Retuned, operating_points, retune
from dse.evaluation.sweep import SweepResult, random_outputs, sweep, sweep_benchmark, sweep_per_exit

__all__ = [
    "Calibration",
    "EvalResult",
    "OperatingPoints",
    "Retuned",
    "ExitOutputs",
    "SweepResult",
    "budget_curve",
    "calibrate",
    "calibrate_budget",
    "evaluate",
    "exit_assignment",
    "expected_cost",
    "geometric_exit_probs",
    "operating_points",
    "random_outputs",
    "retune",
    "sweep",
    "sweep_benchmark",
    "sweep_per_exit",
    "thresholds_for_exit_probs",
]
