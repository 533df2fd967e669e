"""Selective fine-tuning subsets: which exits to re-train when the deployment data drifts.

Shifts (:mod:`~dse.finetune.shifts`), vectorised subset scoring of the classifier ensemble
(:mod:`~dse.finetune.subsets`), training-operation accounting (:mod:`~dse.finetune.ops`), the
original model and shifted features (:mod:`~dse.finetune.context`), the classifiers' training
(:mod:`~dse.finetune.classifiers`) and the procedure (:mod:`~dse.finetune.selective`), after
Hirose et al., IEEE Access 2020.
"""
from __future__ import annotations

from dse.finetune.classifiers import Schedule
from dse.finetune.ops import ExitTrainCost, entire_ops, ops_ratio, selective_ops, step_ops
from dse.finetune.selective import SELECTIONS, FinetuneResult, finetune_config, run_selective
from dse.finetune.shifts import SHIFTS, apply_shift
from dse.finetune.subsets import (ensemble_accuracy, one_se_subset, paired_standard_errors, pattern,
                                  score_subsets, subset_masks)

__all__ = [
    "ExitTrainCost", "FinetuneResult", "SELECTIONS", "SHIFTS", "Schedule", "apply_shift",
    "ensemble_accuracy", "entire_ops", "finetune_config", "one_se_subset", "ops_ratio",
    "paired_standard_errors", "pattern", "run_selective", "score_subsets", "selective_ops",
    "step_ops", "subset_masks",
]
