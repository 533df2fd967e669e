"""What a running search shows: a progress bar with the front size and best point, one line per
failed trial, and the final table of the front."""
from __future__ import annotations

import sys
from typing import Any

from optuna.trial import TrialState
from tqdm.auto import tqdm

from dse.cli.output import table
from dse.search.schema import front_trials, study_attrs, trial_attrs


def best_point(front: list[Any]) -> Any | None:
    """The most accurate front trial (ties: the faster)."""
    return max(front, key=lambda t: (t.values[0], -t.values[1])) if front else None


def summary(front: list[Any]) -> str:
    best = best_point(front)
    if best is None:
        return "front 0"
    return f"front {len(front)}, best {best.values[0]:.2f}% @ {best.values[1]:.4g} ms"


class Progress:
    """A tqdm bar over COMPLETE trials of the study (all workers), on stderr."""

    def __init__(self, study: Any, target: int, complete: int, enabled: bool | None = None) -> None:
        self.study = study
        self.bar = tqdm(total=target, initial=min(complete, target), desc=study.study_name,
                        unit="trial", file=sys.stderr, dynamic_ncols=True,
                        disable=None if enabled is None else not enabled)
        self._seen = complete

    def refresh(self) -> None:
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n = min(len(trials), self.bar.total)
        if n > self._seen:
            self.bar.update(n - self._seen)
            self._seen = n
        self.bar.set_postfix_str(summary(front_trials(self.study)), refresh=True)

    def on_trial(self, trial: Any) -> None:
        if trial.state.name == "FAIL":
            reason = trial_attrs(trial)["fail_reason"] or "unknown reason"
            self.write(f"trial {trial.number} failed: {reason}")
        self.refresh()

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def front_table(study: Any, front: Any) -> str:
    """The front (the rows of ``pareto.csv``, :func:`dse.search.export.pareto_frame`) as a text
    table, cheapest first, with the backbone alone for reference."""
    a = study_attrs(study)
    rows = [[int(r["trial"]), f"{r['val_accuracy']:.2f}", f"{r['test_accuracy']:.2f}",
             f"{r['val_latency_ms']:.4g}", f"{r['test_latency_ms']:.4g}",
             f"{r['val_macs'] / 1e6:.3f}", (r["blocks"] or "").replace(" ", ","),
             f"{r['branch']} {r['branch_params']}".strip(), r["loss"], r["criterion"],
             " ".join(f"{float(x):.3g}" for x in (r["thresholds"] or "").split())]
            for _, r in front.iterrows()]
    text = table(["trial", "val acc %", "test acc %", "latency ms", "test ms", "M MACs",
                  "exit blocks", "branch", "loss", "criterion", "threshold"], rows)
    if a["backbone_val_accuracy"] is not None:
        text += (f"\nbackbone alone: val {a['backbone_val_accuracy']:.2f}%, test "
                 f"{a['backbone_test_accuracy']:.2f}%, {a['backbone_latency_ms']:.4g} ms, "
                 f"{a['backbone_macs'] / 1e6:.3f} M MACs on {a['profile']}/{a['runtime']}")
    return text
