"""The Optuna objective of a dse study: one trial from suggestion to stored attributes.

:class:`TrialRunner` asks the search space for a design, evaluates it
(:func:`dse.search.objective.evaluate_design`), stores the run configuration, metrics and
constraints through the storage schema (:mod:`dse.search.schema`) and, when it helps, enqueues
threshold variants that extend the front (:mod:`dse.search.refine`). A trial that cannot work is
pruned with its reason; one that diverges fails with its reason; the study goes on.
"""
from __future__ import annotations

from typing import Any

import optuna

from dse.errors import TrialFailed
from dse.search.objective import (InvalidDesign, OutputsMemo, evaluate_design, run_config,
                                  scoring_labels)
from dse.search.refine import candidate_values, enqueue_variants, threshold_param
from dse.search.schema import TRIAL
from dse.search.worker import (DUPLICATE_REASON, INTERRUPT, SURPLUS_REASON, WORKER_ID,
                               is_enqueued_duplicate, is_surplus)


class TrialRunner:
    """The Optuna objective: one trial of a dse study (attrs, constraints, failure reasons)."""

    def __init__(self, ctx: Any, space: Any, study_name: str, target: int | None = None, *,
                 conditional: bool = False, refine: bool = True) -> None:
        self.ctx, self.space, self.study_name, self.target = ctx, space, study_name, target
        self.conditional, self.refine = conditional, refine
        self.memo = OutputsMemo()
        self.val_labels = scoring_labels(space)  # one label source scores every trial

    def __call__(self, trial: Any) -> list[float]:
        INTERRUPT.in_trial = True
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            INTERRUPT.in_trial = False
            TRIAL["fail_reason"].set(trial, "interrupted (Ctrl-C)")
            raise
        finally:
            INTERRUPT.in_trial = False

    def _run(self, trial: Any) -> list[float]:
        trials = trial.study.get_trials(deepcopy=False)  # one read for both start checks
        if self.target is not None and is_surplus(trials, trial.number, self.target):
            TRIAL["fail_reason"].set(trial, SURPLUS_REASON)
            raise optuna.TrialPruned(SURPLUS_REASON)
        if is_enqueued_duplicate(trials, trial.number):
            TRIAL["fail_reason"].set(trial, DUPLICATE_REASON)
            raise optuna.TrialPruned(DUPLICATE_REASON)
        design = self.space.suggest(trial, conditional=self.conditional)
        reason = TRIAL["fail_reason"]
        try:
            outcome = evaluate_design(self.ctx, design, self.memo, val_labels=self.val_labels)
        except InvalidDesign as exc:
            reason.set(trial, f"invalid: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        except TrialFailed as exc:
            reason.set(trial, str(exc))
            raise
        except Exception as exc:  # a bug: record it, keep the traceback
            reason.set(trial, f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        attrs = outcome.attrs
        config = run_config(self.ctx, design, attrs["blocks"], attrs["thresholds"], {
            "study": self.study_name, "trial": trial.number, "profile": self.ctx.profile.name,
            "runtime": self.ctx.runtime.name, "val_accuracy": round(attrs["val_accuracy"], 4),
            "test_accuracy": round(attrs["test_accuracy"], 4),
            "expected_latency_ms": round(attrs["expected_latency_ms"], 6),
            # the seed the branches were trained with: `dse finetune` rebuilds the same model
            "proxy_seed": attrs["proxy_seed"],
            # the feature cache's key parts: `dse train --mode frozen` finds the study's cache
            "feature_dtype": self.ctx.settings.feature_dtype,
            "max_samples": self.ctx.settings.max_samples,
            # "stream": no cache fitted; `dse train`, --init proxy and fine-tuning must not build one
            "feature_source": self.ctx.settings.feature_source})
        TRIAL["config"].set(trial, config.to_dict())
        for key, value in attrs.items():
            TRIAL[key].set(trial, value)
        TRIAL["worker"].set(trial, WORKER_ID)
        if hasattr(trial, "set_constraint"):
            for key, value in outcome.constraints.items():
                trial.set_constraint(key, value)
        if self.refine and self.target is not None:
            self._refine(trial, outcome)
        return outcome.values

    def _refine(self, trial: Any, outcome: Any) -> None:
        found = threshold_param(self.space, trial.params)
        if found is None or outcome.variants is None:
            return
        thresholds = candidate_values(found[1], outcome.refine_grid())
        values, feasible = outcome.variants(thresholds)
        enqueue_variants(trial.study, self.space, dict(trial.params), outcome.values, thresholds,
                         values, feasible, self.target, source=trial.number)
