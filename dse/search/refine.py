"""Threshold refinement: after a trial, enqueue the same structure with thresholds that would
extend the Pareto front.

A trial's exits are trained once; every other threshold of the same criterion is then a matter
of arithmetic on its cached outputs (the sweep). When some of those operating points would be
non-dominated by the study's current front, the best ``k`` of them (largest hypervolume gain) are
enqueued as new trials with the same parameters and only the threshold changed. They are
ordinary trials (one configuration each, evaluated by the same code, from the memoised outputs
at almost no cost), they count towards ``--trials``, and they are only enqueued while the
study has room for them (COMPLETE + RUNNING + WAITING < N). The sampler keeps proposing new
structures; refinement makes the front dense along the threshold trade-off of the good ones.
``benchmarks/search_quality.py`` measures the set-up with and without it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from optuna.trial import TrialState as S

from dse.design.knobs import threshold_param as threshold_name
from dse.search.dims import Choice, Range
from dse.search.pareto import front_mask, hypervolume, to_losses
from dse.search.schema import directions, is_feasible

#: threshold variants enqueued per trial at most
REFINE_PER_TRIAL = 2


def threshold_param(space: Any, params: dict[str, Any]) -> tuple[str, Any] | None:
    """(parameter name, dimension) of the trial's global threshold, if it is searched."""
    if space.thresholds != "global":
        return None
    criterion = space.knob("policy.criterion")
    name = threshold_name(params.get(criterion.name, criterion.dim.values()[0]))
    try:
        dim = space.param(name).dim
    except KeyError:
        return None
    return (name, dim) if isinstance(dim, (Choice, Range)) else None


def candidate_values(dim: Any, grid: Sequence[float]) -> list[float]:
    """Threshold values to consider: a choice list as is, else the sweep grid inside the range."""
    if isinstance(dim, Choice):
        return [float(v) for v in dim.options]
    lo, hi = float(dim.low), float(dim.high)
    return sorted({float(np.clip(t, lo, hi)) for t in grid})


def hv_gains(front: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Hypervolume each candidate adds to ``front`` alone (losses; scaled by the joint range,
    reference 10% past the joint worst)."""
    joint = np.vstack([front, candidates]) if front.size else candidates
    lo, hi = joint.min(axis=0), joint.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    f = (front - lo) / span if front.size else front.reshape(0, joint.shape[1])
    c = (candidates - lo) / span
    ref = np.full(joint.shape[1], 1.1)
    base = hypervolume(f, ref) if f.size else 0.0
    return np.array([hypervolume(np.vstack([f, x[None, :]]), ref) - base for x in c])


def pick(front_values: Sequence[Sequence[float]], values: Sequence[Sequence[float]],
         directions: Sequence[str], k: int) -> list[int]:
    """Indices of up to ``k`` candidate value vectors that extend the front most, best first."""
    if not len(values) or k <= 0:
        return []
    cand = to_losses(values, directions)
    front = to_losses(front_values, directions) if len(front_values) else np.empty((0, cand.shape[1]))
    if front.size:
        front = front[front_mask(front)]
    gains = hv_gains(front, cand)
    order = [int(i) for i in np.argsort(-gains, kind="stable") if gains[i] > 1e-12]
    chosen: list[int] = []
    for i in order:
        if any(np.array_equal(cand[i], cand[j]) for j in chosen):
            continue
        chosen.append(i)
        if len(chosen) == k:
            break
    return chosen


def enqueue_variants(study: Any, space: Any, params: dict[str, Any], own_values: Sequence[float],
                     thresholds: Sequence[float], values: Sequence[Sequence[float]],
                     feasible: Sequence[bool], target: int, k: int = REFINE_PER_TRIAL,
                     source: int | None = None) -> list[float]:
    """Enqueue up to ``k`` threshold variants of ``params``; returns the thresholds enqueued.

    ``values[i]`` are the objective values (study order) of threshold ``thresholds[i]``;
    ``own_values`` those of the trial itself (not yet COMPLETE while it runs).
    """
    found = threshold_param(space, params)
    if found is None:
        return []
    name, _ = found
    trials = study.get_trials(deepcopy=False)
    busy = sum(1 for t in trials if t.state in (S.COMPLETE, S.RUNNING, S.WAITING))
    room = min(k, target - busy)
    if room <= 0:
        return []
    seen = set()
    for t in trials:
        if t.state in (S.COMPLETE, S.RUNNING, S.WAITING):
            key = _key(space, t.params or t.system_attrs.get("fixed_params", {}))
            if key is not None:
                seen.add(key)
    keep = [i for i, t in enumerate(thresholds) if feasible[i]
            and _key(space, {**params, name: t}) not in seen]
    front = [t.values for t in trials if t.state == S.COMPLETE and t.values and is_feasible(t)]
    chosen = pick(front + [list(own_values)], [values[i] for i in keep], directions(study), room)
    enqueued = []
    for j in chosen:
        t = float(thresholds[keep[j]])
        study.enqueue_trial({**params, name: t}, user_attrs={"refined_from": source},
                            skip_if_exists=True)
        enqueued.append(t)
    return enqueued


def _key(space: Any, params: dict[str, Any]) -> str | None:
    """The configuration ``params`` describe, as a comparable key (None if incomplete)."""
    try:
        return repr(space.decode(params))
    except (KeyError, TypeError, ValueError):
        return None
