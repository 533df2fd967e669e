"""An Optuna study -> the DataFrames a report is drawn from (schema: study and trial user attrs).

Everything the report shows is rebuilt from the storage alone: the study's user attributes hold
the setting (backbone, dataset, profile, objectives, constraints, the backbone's own numbers);
every complete trial's user attributes hold its configuration, exit mix, per-exit accuracy,
costs and a compact threshold sweep; the keys, types and units are declared in
:mod:`dse.search.schema` (accuracies in percent).

The Pareto front is the search's (:func:`dse.search.schema.front_trials`, the rows of
``pareto.csv``); :func:`pareto_mask` applies the same dominance rule
(:func:`dse.search.pareto.front_mask`) to any set of points (the two-objective step line).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from dse.search.pareto import front_mask, to_losses
from dse.search.schema import front_trials, is_feasible, objectives as study_objectives, trial_attrs

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd

#: objective name -> (column, axis label with units)
OBJECTIVE_LABELS = {
    "accuracy": "Validation accuracy (%)",
    "latency_ms": "Expected latency (ms)",
    "macs": "Expected MACs",
    "energy_mj": "Expected energy (mJ)",
}
@dataclass
class ReportData:
    """A study as tables: complete trials, the front, counts, failures and settings."""

    study_name: str
    meta: dict[str, Any]                 #: study user attrs
    objectives: list[str]                #: objective names in value order
    maximize: list[bool]                 #: per objective
    trials: pd.DataFrame                 #: one row per complete trial, by trial number
    front: pd.DataFrame                  #: rows of ``trials`` on the Pareto front, by latency
    counts: dict[str, int]               #: trial states, feasible count
    failures: pd.DataFrame               #: number, reason (failed trials)
    importances: dict[str, Any] = field(default_factory=dict)  #: objective -> dict or note

    @property
    def backbone_accuracy(self) -> float | None:
        """The backbone alone: validation accuracy in % (None when unknown)."""
        value = self.meta.get("backbone_val_accuracy")
        return None if value is None else float(value)

    def has(self, column: str) -> bool:
        return column in self.trials and self.trials[column].notna().any()


def sweep_accuracy(sweep: dict) -> list[float]:
    """A stored sweep's accuracies (percent)."""
    return [float(v) for v in sweep.get("accuracy") or []]


def pareto_mask(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """bool [N]: rows no other row dominates (duplicates are all kept, as Optuna does)."""
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return np.zeros(0, dtype=bool)
    return front_mask(to_losses(pts, ["maximize" if m else "minimize" for m in maximize]))


def _config_summary(config: dict) -> dict[str, Any]:
    exits = config.get("exits", {}) or {}
    training = config.get("training", {}) or {}
    policy = config.get("exit_policy", {}) or {}
    loss = training.get("loss", {}) or {}
    loss = loss if isinstance(loss, dict) else {"name": loss}
    params = exits.get("branch_params") or {}
    return {
        "placement": exits.get("placement"),
        "branch": exits.get("branch"),
        "branch_params": ", ".join(f"{k}={v}" for k, v in params.items() if v is not None),
        "loss": loss.get("name"),
        "isc": bool(loss.get("isc", False)),
        "criterion": policy.get("criterion"),
        "thresholds": list(policy.get("thresholds") or []),
        "lr": training.get("lr"),
    }


def trial_rows(study) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(complete trials, failed trials, counts by state) from a study."""
    import pandas as pd
    objectives = study_objectives(study)
    rows, failed = [], []
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
        if t.state == TrialState.FAIL:
            failed.append({"number": t.number,
                           "reason": t.user_attrs.get("fail_reason", "") or "(no reason recorded)"})
        if t.state != TrialState.COMPLETE or t.values is None:
            continue
        a = trial_attrs(t)
        row: dict[str, Any] = {"number": t.number, "feasible": is_feasible(t)}
        for name, value in zip(objectives, t.values):
            row[name] = float(value)
        for key in ("val_accuracy", "test_accuracy", "per_exit_accuracy",
                    "test_per_exit_accuracy", "expected_latency_ms", "test_expected_latency_ms", "expected_macs",
                    "expected_energy_mj", "duration_s", "proxy_seed"):
            row[key] = a.get(key)
        for key in ("blocks", "exit_fractions", "test_exit_fractions", "exit_latency_ms",
                    "exit_macs", "exit_energy_mj", "constraint", "sweep", "config"):
            row[key] = a.get(key)
        row["num_exits"] = len(a["exit_fractions"]) if a.get("exit_fractions") else (
            len(a["blocks"]) + 1 if a.get("blocks") is not None else None)
        row.update(_config_summary(a.get("config") or {}))
        row.update({f"param_{k}": v for k, v in t.params.items()})
        rows.append(row)
    counts["feasible"] = sum(1 for r in rows if r["feasible"])
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values("number").reset_index(drop=True)
    return trials, pd.DataFrame(failed, columns=["number", "reason"]), counts


def study_frames(study, importances: bool = True) -> ReportData:
    """Read a study into :class:`ReportData` (with parameter importances unless disabled)."""
    meta = dict(study.user_attrs)
    objectives = study_objectives(study)
    maximize = [d.name == "MAXIMIZE" for d in study.directions]
    trials, failures, counts = trial_rows(study)
    front_numbers = {t.number for t in front_trials(study)} if not trials.empty else set()
    if not trials.empty:
        trials["on_front"] = trials["number"].isin(front_numbers)
        front = trials[trials["on_front"]]
        sort_by = "latency_ms" if "latency_ms" in front else objectives[-1]
        front = front.sort_values([sort_by, "number"]).reset_index(drop=True)
    else:
        front = trials
    data = ReportData(str(study.study_name), meta, objectives, maximize, trials, front, counts,
                      failures)
    if importances:
        data.importances = param_importances(study, objectives)
    return data


def param_importances(study, objectives: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """objective -> {param: importance} (fANOVA, normalised), or a one-line note explaining why
    there is none (too few trials, no parameter shared by all trials, constant objective)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    out: dict[str, Any] = {}
    for i, name in enumerate(objectives):
        if len(complete) < 2:
            out[name] = f"needs at least 2 complete trials, the study has {len(complete)}"
            continue
        values = {t.values[i] for t in complete}
        if len(values) < 2:
            out[name] = "every trial has the same value: no parameter explains a difference"
            continue
        try:
            imp = optuna.importance.get_param_importances(
                study, target=lambda t, i=i: t.values[i],
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            out[name] = f"not computable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            continue
        imp = {k: float(v) for k, v in imp.items() if not math.isnan(float(v))}
        out[name] = imp if imp else "no parameter is shared by every complete trial"
    return out
