"""What a running search shows on stderr: a progress bar over COMPLETE trials with the front
size and the best point.

The bar refreshes after every trial, so it reads the trials without copying them and finds the
front with :func:`dse.search.pareto.front_mask` on their values (Optuna's ``best_trials`` deep-
copies every trial with all its attributes: a tenth of a 100-trial search's time was spent
there). A disabled bar (stderr not a terminal) reads nothing.
"""
from __future__ import annotations

import sys
from typing import Any

from optuna.trial import TrialState
from tqdm.auto import tqdm

from dse.search.pareto import front_mask, to_losses
from dse.search.schema import directions, is_feasible


def best_point(front: list[Any]) -> Any | None:
    """The most accurate front trial (ties: the faster)."""
    return max(front, key=lambda t: (t.values[0], -t.values[1])) if front else None


def cheap_front(trials: list[Any], dirs: list[str]) -> list[Any]:
    """The feasible non-dominated trials among COMPLETE ``trials``, without copying them; of
    trials with equal values only the first (as :func:`dse.search.schema.front_trials`)."""
    feasible = [t for t in trials if t.values is not None and is_feasible(t)]
    if not feasible:
        return []
    mask = front_mask(to_losses([t.values for t in feasible], dirs))
    first: dict[tuple, Any] = {}
    for t, keep in zip(feasible, mask):
        if keep:
            first.setdefault(tuple(t.values), t)
    return list(first.values())


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
        self._dirs: list[str] | None = None

    def refresh(self) -> None:
        if self.bar.disable:
            return
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n = min(len(trials), self.bar.total)
        if n > self._seen:
            self.bar.update(n - self._seen)
            self._seen = n
        if self._dirs is None:
            self._dirs = directions(self.study)
        self.bar.set_postfix_str(summary(cheap_front(trials, self._dirs)), refresh=True)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
