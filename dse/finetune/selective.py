"""Selective fine-tuning of a classifier ensemble (Hirose et al., IEEE Access 2020).

When the deployment data drifts (a shift from :mod:`dse.finetune.shifts`), the exits of a
multi-exit model are used as an ensemble: y*_b = mean of the logits of exits 1..b
(:mod:`dse.finetune.subsets`). Only the exit classifiers are re-trained; the backbone stays
frozen. The procedure:

1. *Probe*: every exit's classifier is fine-tuned for s steps on shifted training data (default
   s = 25 % of the schedule, at least 30 steps: :func:`default_probe_steps`; one epoch, the
   earlier default, is 9 steps on digits, too few for the exits to move beyond noise).
2. *Select*: every subset T of exits is scored by the last-exit ensemble accuracy with the
   probed parameters for exits in T and the original parameters elsewhere (eq. 4-5), on the
   shifted train and validation splits together (``score_on``). By default
   (``selection="budget"``, our choice) the subset with the highest score among those whose
   training step costs at most 0.8 of every exit's wins (:mod:`dse.finetune.decide`): the
   paper's rule (the highest score) restricted to subsets that save at least a fifth of the
   finishing cost. Then the evidence is checked (:func:`dse.finetune.decide.decide`): the
   chosen subset's estimated gap to re-training every exit, with its paired standard error, is
   reported, and when the probe did not improve the ensemble beyond noise, or the gap may
   exceed 2 points, every exit is re-trained instead (the safe choice), with a warning.
   Why this rule: ``benchmarks/finetune_subsets.py`` (its docstring has the numbers) found the
   cheapest subset within noise of the best ("one-se", the earlier default) or within 0.5
   points of re-training all too eager to drop exits whose loss showed only on test.
   ``selection="best"`` with ``score_on="val"`` is the plain rule (highest validation score;
   ties: fewer exits). The train split is fair to score on: each training image has been seen
   a few times by a classifier whose only other training was on clean data.
3. *Finish*: the exits in T continue from the probe to the end of the schedule (S steps).

*Entire* fine-tuning trains every exit for the S steps. Each classifier is trained with its own
cross-entropy on its own parameters (the backbone is frozen), so the exits train independently:
the parameters an exit in T reaches after S steps are exactly those the entire run gives it
(same seeded minibatches, same schedule; ``tests/finetune`` checks this). One run of all exits
with a snapshot after s steps therefore yields the probe, the entire result and every selective
result. Accuracies are reported on the shifted test split; the subset is chosen on validation.

The ensemble uses every classifier's own logits, as the paper's independent classifiers; for a
configuration trained with inline subnetwork collaboration (``isc``) these are the logits
before the ISC sum, so its ensemble differs from its early-exit predictions.

Reference (``best_subset``): the subset with the highest validation score under the fully
fine-tuned parameters (fine-tune everything, then try every subset), i.e. what selection
would pick with no probe budget.
Training operations follow :mod:`dse.finetune.ops`. This module holds the procedure (probe,
select, finish) and its result (:class:`FinetuneResult`); the classifiers are trained by
:mod:`dse.finetune.classifiers` (optimizer, schedule and minibatch order from
:mod:`dse.train.engine`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from dse.design import RunConfig
from dse.errors import ConfigError
from dse.finetune.classifiers import Schedule, classifier_logits, finetune
from dse.finetune.context import (Context, OriginalModel, ShiftedSplit, context_for,
                                  shifted_features, train_original)
from dse.finetune.ops import entire_ops, ops_ratio, selective_ops, step_ops
from dse.finetune.decide import MIN_PROBE_STEPS, RULES, Decision, decide
from dse.finetune.shifts import check_shift
from dse.finetune.subsets import (best_subset, ensemble_accuracy, mixed_logits, pattern,
                                  score_subsets, subset_masks)
from dse.train.engine import Log
from dse.train.streamed import refuse_streamed

#: subset rules (:data:`dse.finetune.decide.RULES`): "budget" (the default), "one-se", "best"
SELECTIONS = RULES
PROBE_MIN_STEPS = MIN_PROBE_STEPS  #: the probe's floor in steps, whatever the epoch size
PROBE_FRACTION = 0.25    #: ... and at least this share of the schedule
#: the shifted splits the probed subsets are scored on
SCORE_SPLITS = {"train+val": ("val", "train"), "val": ("val",)}


@dataclass(frozen=True)
class FinetuneResult:
    shift: str
    subset: str                     #: chosen pattern, exit 1 first (F = fine-tuned)
    accuracy: float                 #: selective: last-exit ensemble accuracy (%, shifted test)
    entire_accuracy: float          #: every exit fine-tuned (%)
    baseline_accuracy: float        #: no fine-tuning (%)
    ops_ratio: float                #: selective / entire training MACs (classifiers only)
    ops_ratio_with_backbone: float  #: same with a frozen-backbone forward pass every step
    best_subset: str                #: reference: subset chosen with fully fine-tuned parameters
    best_subset_accuracy: float     #: its accuracy (%)
    probe_accuracy: float           #: score of the chosen subset after the probe (%, score_on)
    selective_ops: int              #: training MACs, classifiers only
    entire_ops: int
    probe_steps: int
    steps: int
    batch_size: int
    num_exits: int
    exit_ensemble_baseline: tuple[float, ...]  #: y*_b accuracy at every exit (%), no fine-tuning
    exit_ensemble_selective: tuple[float, ...]
    exit_ensemble_entire: tuple[float, ...]
    selection: str = "budget"          #: the subset rule (:data:`SELECTIONS`)
    score_on: str = "train+val"     #: the shifted splits the probed subsets were scored on
    score_samples: int = 0          #: how many images that is
    #: the same three models on the original, unshifted test split (%; Hirose et al. Table 3
    #: reports both): the chosen subset, every exit fine-tuned, no fine-tuning
    original_accuracy: float | None = None
    original_entire_accuracy: float | None = None
    original_baseline_accuracy: float | None = None
    #: the probe's evidence (:mod:`dse.finetune.decide`), points on the scoring images: the
    #: estimated gap of the rule's pick (``rule_subset``; the finished subset unless ``warning``
    #: says the safe choice, every exit, was taken) to re-training every exit, and its paired
    #: standard error
    estimated_gap: float = 0.0
    estimated_gap_se: float = 0.0
    probe_gain: float = 0.0          #: probed score(every exit fine-tuned) - score(none)
    probe_gain_se: float = 0.0
    rule_subset: str = ""            #: the rule's pick (the subset, unless a warning overrode it)
    warning: str | None = None       #: why the safe choice (every exit) was taken instead

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


def check_selection(selection: str, score_on: str) -> None:
    if selection not in SELECTIONS:
        raise ConfigError(f"subset selection must be one of {', '.join(SELECTIONS)}, "
                          f"got {selection!r}")
    if score_on not in SCORE_SPLITS:
        raise ConfigError(f"subsets are scored on one of {', '.join(SCORE_SPLITS)}, "
                          f"got {score_on!r}")


def choose_subset(base_logits: np.ndarray, probe_logits: np.ndarray, labels: np.ndarray,
                  masks: np.ndarray, step_costs: np.ndarray, selection: str = "budget",
                  probe_steps: int | None = None) -> Decision:
    """The subset to finish, from the probed [B, N, K] logits of the scoring images, with the
    evidence behind it (:func:`dse.finetune.decide.decide`).

    ``step_costs`` [S]: every subset's training operations per step (what finishing it costs).
    """
    return decide(base_logits, probe_logits, labels, masks, step_costs, selection,
                  probe_steps=probe_steps)


def default_probe_steps(steps: int) -> int:
    """The probe's length in steps: at least :data:`PROBE_MIN_STEPS` and
    :data:`PROBE_FRACTION` of the schedule, at most the schedule.

    Why steps, not epochs, and a floor: on digits one epoch is 9 steps, after which every exit
    has moved so little that subsets score within noise of each other (:mod:`dse.finetune.decide`);
    on a large dataset an epoch can exceed the whole schedule.
    """
    return max(1, min(steps, max(PROBE_MIN_STEPS, math.ceil(PROBE_FRACTION * steps))))


def run_selective(base: OriginalModel, shifted: dict[str, ShiftedSplit], schedule: Schedule,
                  shift: str, *, selection: str = "budget", score_on: str = "train+val",
                  original: ShiftedSplit | None = None, log: Log | None = None) -> FinetuneResult:
    """The procedure of the module docstring on an :class:`~dse.finetune.context.OriginalModel`
    and shifted features from :func:`~dse.finetune.context.shifted_features` (train, val, test).
    ``original``: the unshifted test split's features, measured too when given."""
    check_selection(selection, score_on)

    def inputs(split: str) -> list[torch.Tensor]:
        return [shifted[split].features[b] for b in base.input_blocks]

    train_x, train_y = inputs("train"), shifted["train"].labels
    val_y, test_y = shifted["val"].labels.numpy(), shifted["test"].labels.numpy()
    states = finetune(base.classifiers, train_x, train_y, schedule,
                      snapshots=[schedule.probe_steps], log=log)
    probe, tuned = states[schedule.probe_steps], states[schedule.steps]

    base_val = classifier_logits(base.classifiers, inputs("val"))
    base_test = classifier_logits(base.classifiers, inputs("test"))
    tuned_val = classifier_logits(tuned, inputs("val"))
    tuned_test = classifier_logits(tuned, inputs("test"))
    splits = SCORE_SPLITS[score_on]
    score_base = np.concatenate([base_val if s == "val" else
                                 classifier_logits(base.classifiers, inputs(s)) for s in splits], 1)
    score_probe = np.concatenate([classifier_logits(probe, inputs(s)) for s in splits], 1)
    score_y = np.concatenate([shifted[s].labels.numpy() for s in splits])

    n_train = int(train_y.shape[0])
    batch = min(schedule.batch_size, n_train)
    masks = subset_masks(base.num_exits)
    step_costs = np.array([step_ops(base.costs, m, batch) for m in masks], dtype=np.float64)
    decision = choose_subset(score_base, score_probe, score_y, masks, step_costs, selection,
                             schedule.probe_steps)
    chosen = masks[decision.index]
    probe_score = score_subsets(score_base, score_probe, score_y, chosen[None])[0]
    reference = masks[best_subset(score_subsets(base_val, tuned_val, val_y, masks), masks)]
    test_scores = score_subsets(base_test, tuned_test, test_y,
                                np.stack([chosen, reference, np.ones_like(chosen),
                                          np.zeros_like(chosen)]))
    args = (base.costs, chosen, schedule.probe_steps, schedule.steps, batch)

    def pct(v: float) -> float:
        return round(100.0 * float(v), 4)

    def per_exit(logits: np.ndarray) -> tuple[float, ...]:
        return tuple(pct(a) for a in ensemble_accuracy(logits, test_y))

    clean: dict[str, float] = {}
    if original is not None:
        x = [original.features[b] for b in base.input_blocks]
        scores = score_subsets(classifier_logits(base.classifiers, x), classifier_logits(tuned, x),
                               original.labels.numpy(),
                               np.stack([chosen, np.ones_like(chosen), np.zeros_like(chosen)]))
        clean = {"original_accuracy": pct(scores[0]), "original_entire_accuracy": pct(scores[1]),
                 "original_baseline_accuracy": pct(scores[2])}
    return FinetuneResult(
        shift=shift, subset=pattern(chosen), accuracy=pct(test_scores[0]),
        entire_accuracy=pct(test_scores[2]), baseline_accuracy=pct(test_scores[3]),
        ops_ratio=round(ops_ratio(*args), 6),
        ops_ratio_with_backbone=round(ops_ratio(*args, backbone_forward=True), 6),
        best_subset=pattern(reference), best_subset_accuracy=pct(test_scores[1]),
        probe_accuracy=pct(probe_score),
        selective_ops=selective_ops(*args),
        entire_ops=entire_ops(base.costs, schedule.steps, batch),
        probe_steps=schedule.probe_steps, steps=schedule.steps, batch_size=batch,
        num_exits=base.num_exits, exit_ensemble_baseline=per_exit(base_test),
        exit_ensemble_selective=per_exit(mixed_logits(base_test, tuned_test, chosen)),
        exit_ensemble_entire=per_exit(tuned_test), selection=selection, score_on=score_on,
        score_samples=int(score_y.shape[0]), **clean,
        estimated_gap=decision.gap_points, estimated_gap_se=decision.gap_se_points,
        probe_gain=decision.gain_points, probe_gain_se=decision.gain_se_points,
        rule_subset=pattern(masks[decision.rule_index]), warning=decision.warning,
    )


def finetune_config(config: RunConfig, shift: str, *, probe_steps: int | None = None,
                    steps: int | None = None, lr: float | None = None, ctx: Context | None = None,
                    proxy_seed: int | None = None, device: torch.device | str = "cpu",
                    log: Log | None = None, selection: str = "budget",
                    score_on: str = "train+val") -> FinetuneResult:
    """Rebuild ``config``'s model, shift its data and run selective vs entire fine-tuning.

    Defaults: probe = :func:`default_probe_steps`, schedule = the configuration's proxy
    steps, learning rate, optimizer and batch size = its training spec, seed = its seed.
    ``proxy_seed``: the seed the search trained the original branches with (a trial's
    ``proxy_seed`` attribute), so the rebuilt model is the one the search evaluated.
    ``selection`` and ``score_on``: the subset rule (module docstring, step 2).
    ``log`` receives a line per stage and the fine-tuning's progress.
    """
    shift = check_shift(shift)
    check_selection(selection, score_on)
    refuse_streamed(config, "fine-tuning", "search with --max-samples N (a cached seeded "
                    "subset) to fine-tune its configurations")
    ctx = ctx if ctx is not None else context_for(config, device=device, log=log)
    t = config.training
    total = steps if steps is not None else t.steps
    schedule = Schedule(  # checked before any training
        probe_steps=probe_steps if probe_steps is not None else default_probe_steps(total),
        steps=total, lr=lr if lr is not None else t.lr,
        optimizer=t.optimizer, batch_size=t.batch_size, seed=config.seed)
    base = train_original(config, ctx, seed=proxy_seed, log=log)
    shifted = shifted_features(ctx, shift, base.input_blocks, log=log)
    original = shifted_features(ctx, None, base.input_blocks, splits=("test",), log=log)["test"]
    return run_selective(base, shifted, schedule, shift, selection=selection, score_on=score_on,
                         original=original, log=log)
