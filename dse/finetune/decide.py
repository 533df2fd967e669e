"""Deciding which exits to re-train from a probe, and saying when the probe cannot decide.

After the probe (every exit fine-tuned for s steps, :mod:`dse.finetune.selective`), every
subset T of exits is scored on the shifted scoring images with the probed parameters for the
exits in T and the original ones elsewhere (:func:`dse.finetune.subsets.score_subsets`). A rule
picks a subset (:data:`RULES`); then the evidence is checked, on the same images:

- the *gain* of the probe: score(all exits probed) - score(none), with its paired standard
  error. A probe too short to improve the ensemble beyond noise cannot rank subsets (on
  ``rotate`` after one epoch of digits, nine steps, every subset scored within noise of the
  original model, and the cheapest one then lost 28 points to re-training all);
- the chosen subset's estimated *gap* to re-training all: score(T) - score(all), with the paired
  standard error of that difference (se = sd(c_T - c_all) / sqrt(N) over the per-image 0/1
  correctness c; Hastie et al., ESL, 2nd ed., sec. 7.10, for paired standard errors).

A probe shorter than :data:`MIN_PROBE_STEPS` steps is not trusted at all: on ``rotate`` with a
demo configuration a 9-step probe scored the subset FFB 3.9 ± 1.0 points *above* re-training
every exit, with a gain beyond noise, and FFB finished 21.7 points below it (70.47 % against
92.20 %); exits left at their original parameters look harmless while every exit is still
close to where it started. When the probe is that short, the gain is below two standard
errors, or the gap's lower end (gap - 2 se) lies more than
:data:`MAX_GAP_POINTS` below re-training all, the probe does not separate the chosen subset
from a bad one: the decision falls back to the safe choice, re-training every exit, with a
warning that says why and what to do (a longer probe; or nothing, when the gap itself is that
large: every subset the rule may pick is clearly worse, e.g. a single ConvX exit whose branch
is nearly all the training cost). The gap is the probe's estimate: the
finished exits keep improving after the probe, so the measured gap on test (reported beside it)
is usually of the same sign and not larger in size when the probe is long enough to have
learned (checked by ``benchmarks/finetune_subsets.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.finetune.subsets import (best_subset, one_se_subset, paired_standard_errors,
                                  reference_subset, score_subsets)
from dse.finetune.subsets import pattern as _pattern

#: the subset rules: "budget" (the default: the highest probed score among the subsets whose
#: training step costs at most :data:`BUDGET` of every exit's), "one-se" (cheapest within one
#: paired standard error of the best probed score), "best" (highest probed score, the paper's)
RULES = ("budget", "one-se", "best")
BUDGET = 0.8             #: "budget": a finished subset's per-step training ops / every exit's
MIN_PROBE_STEPS = 30     #: a shorter probe is not evidence enough (our choice, see below)
MAX_GAP_POINTS = 2.0     #: beyond this (at the gap's lower end), the safe choice is taken
Z = 2.0                  #: standard errors of the checks (about a 95 % one-sided bound)


@dataclass(frozen=True)
class Decision:
    """The subset to finish and the evidence behind it (accuracies in points, 0-100)."""

    index: int               #: subset finished (the safe choice when the evidence fails)
    rule_index: int          #: the rule's pick
    gap_points: float        #: probed score(rule's pick) - score(all exits)
    gap_se_points: float     #: its paired standard error
    gain_points: float       #: probed score(all exits) - score(no exit fine-tuned)
    gain_se_points: float    #: its paired standard error
    warning: str | None      #: why the safe choice was taken (None: the rule's pick stands)

    @property
    def decided(self) -> bool:
        return self.warning is None


def rule_subset(scores: np.ndarray, base: np.ndarray, probe: np.ndarray, labels: np.ndarray,
                masks: np.ndarray, step_costs: np.ndarray, rule: str,
                budget: float = BUDGET) -> int:
    """Index of the subset ``rule`` picks from the probed ``scores`` [S] (fractions)."""
    if rule == "best":
        return best_subset(scores, masks)
    if rule == "one-se":
        ref = masks[reference_subset(scores, step_costs)]
        se = paired_standard_errors(base, probe, labels, ref, masks)
        return one_se_subset(scores, se, step_costs, masks)
    return budget_subset(scores, step_costs, budget)


def budget_subset(scores: np.ndarray, costs: np.ndarray, budget: float = BUDGET) -> int:
    """Index of the highest-scoring subset whose cost is at most ``budget`` x the cost of
    every exit (the last entry of ``costs``); ties: cheaper, then lower index."""
    scores, costs = np.asarray(scores, np.float64), np.asarray(costs, np.float64)
    ok = costs <= budget * costs[-1] * (1 + 1e-9)
    order = np.lexsort((np.arange(scores.size), costs, np.where(ok, -scores, np.inf)))
    return int(order[0])


def decide(base: np.ndarray, probe: np.ndarray, labels: np.ndarray, masks: np.ndarray,
           step_costs: np.ndarray, rule: str = "budget", *, probe_steps: int | None = None,
           budget: float = BUDGET, max_gap_points: float = MAX_GAP_POINTS,
           min_probe_steps: int = MIN_PROBE_STEPS) -> Decision:
    """The rule's subset, checked against the evidence (module docstring).

    ``base``/``probe``: [B, N, K] logits of the scoring images before and after the probe;
    ``masks`` [S, B] with every exit last (:func:`dse.finetune.subsets.subset_masks`).
    ``probe_steps``: the probe's length (None: not checked against ``min_probe_steps``).
    """
    scores = score_subsets(base, probe, labels, masks)
    pick = rule_subset(scores, base, probe, labels, masks, step_costs, rule, budget)
    every, none = len(masks) - 1, 0
    se_all = paired_standard_errors(base, probe, labels, masks[every], masks[[pick, none]])
    gap, gap_se = 100 * (scores[pick] - scores[every]), 100 * se_all[0]
    gain, gain_se = 100 * (scores[every] - scores[none]), 100 * se_all[1]
    warning = None
    if probe_steps is not None and probe_steps < min_probe_steps:
        warning = (f"a {probe_steps}-step probe is too short to choose a subset (at least "
                   f"{min_probe_steps} steps; it rated {_pattern(masks[pick])} {gap:+.2f} ± "
                   f"{gap_se:.2f} points from re-training every exit, and short probes misjudge "
                   "that): re-training every exit (the safe choice)")
    elif gain < Z * gain_se or gain <= 0:
        warning = (f"the {probe_steps}-step probe did not improve the exits beyond noise "
                   f"(+{gain:.2f} ± {gain_se:.2f} points with every exit fine-tuned), so it "
                   "cannot tell subsets apart: re-training every exit (the safe choice); give "
                   "more probe steps to choose a subset")
    elif gap < -max_gap_points:
        warning = (f"the subset rule {rule} picked {_pattern(masks[pick])}, estimated "
                   f"{gap:+.2f} ± {gap_se:.2f} points from re-training every exit, more than "
                   f"{max_gap_points:g} points worse: re-training every exit (the safe choice)")
    elif gap - Z * gap_se < -max_gap_points:
        warning = (f"the probe cannot rule out that subset {_pattern(masks[pick])} (rule {rule}) "
                   f"being more than {max_gap_points:g} points worse than re-training every exit "
                   f"(estimated {gap:+.2f} ± {gap_se:.2f} points): re-training every exit (the "
                   "safe choice); give more probe steps to choose a subset")
    index = pick if warning is None else every
    return Decision(int(index), int(pick), round(float(gap), 4), round(float(gap_se), 4),
                    round(float(gain), 4), round(float(gain_se), 4), warning)
