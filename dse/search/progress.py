"""What a running search shows on stderr: a progress bar over COMPLETE trials with the front
size and the best point."""
from __future__ import annotations

import sys
from typing import Any

from optuna.trial import TrialState
from tqdm.auto import tqdm

from dse.search.schema import front_trials


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

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
