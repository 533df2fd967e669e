"""Cached per-exit outputs and the criterion scores computed from them.

A trained configuration is evaluated once per split into :class:`ExitOutputs` (logits and
confidences of every exit, the final one last, plus labels); every threshold choice after that
is numpy arithmetic on these arrays, so sweeping thresholds costs no forward pass.
Scores come from :data:`dse.models.criteria.CRITERIA` (``score_np``), the same formulas as the
torch early-exit path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dse.errors import DataError
from dse.models.criteria import CRITERIA
from dse.models.criteria import per_exit_thresholds as criterion_thresholds


@dataclass(frozen=True)
class ExitOutputs:
    """Per-exit outputs of one split. E counts every exit including the final one.

    The arrays are stored read-only; scores and correctness are cached on first use.
    """

    logits: np.ndarray  #: float32 [E, N, K]
    conf: np.ndarray    #: float32 [E, N], confidence head in [0, 1]; ones for the final exit
    labels: np.ndarray  #: int64 [N]
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        logits = _readonly(np.asarray(self.logits, dtype=np.float32))
        conf = _readonly(np.asarray(self.conf, dtype=np.float32))
        labels = _readonly(np.asarray(self.labels, dtype=np.int64))
        if logits.ndim != 3 or logits.shape[0] < 1:
            raise ValueError(f"logits must be [E, N, K] with E >= 1, got shape {logits.shape}")
        if conf.shape != logits.shape[:2] or labels.shape != logits.shape[1:2]:
            raise ValueError(f"shapes disagree: logits {logits.shape}, conf {conf.shape}, "
                             f"labels {labels.shape} (expected [E, N, K], [E, N], [N])")
        for e in range(logits.shape[0]):
            if not (np.isfinite(logits[e]).all() and np.isfinite(conf[e]).all()):
                raise DataError(f"exit outputs contain nan or inf at exit {e + 1} of {logits.shape[0]}")
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "conf", conf)
        object.__setattr__(self, "labels", labels)

    @property
    def num_exits(self) -> int:
        return self.logits.shape[0]

    @property
    def num_samples(self) -> int:
        return self.logits.shape[1]

    @classmethod
    def from_exits(cls, logits: Sequence[Any], conf: Sequence[Any], labels: Any) -> ExitOutputs:
        """Stack per-exit arrays or tensors: ``logits[e]`` is [N, K], ``conf[e]`` [N] or [N, 1]."""
        return cls(np.stack([_numpy(z) for z in logits]),
                   np.stack([_numpy(c).reshape(-1) for c in conf]),
                   _numpy(labels, np.int64))

    def pseudo_labelled(self) -> ExitOutputs:
        """The same outputs labelled by the final exit's argmax (a frozen backbone's own
        predictions): accuracy then measures agreement with the backbone, and no ground-truth
        label is read (PTEEnet's pseudo labels, Lahiany et al. 2022)."""
        return ExitOutputs(self.logits, self.conf, self.logits[-1].argmax(axis=-1))

    def correct(self) -> np.ndarray:
        """bool [E, N]: exit e's argmax equals the label."""
        if "correct" not in self._cache:
            self._cache["correct"] = _readonly(self.logits.argmax(axis=-1) == self.labels[None, :])
        return self._cache["correct"]

    def scores(self, criterion: str) -> np.ndarray:
        """float64 [E, N]: the criterion's score of every exit (the final row is computed too)."""
        name = CRITERIA.resolve(criterion)
        key = ("scores", name)
        if key not in self._cache:
            crit = CRITERIA.get(name)
            rows = [np.asarray(crit.score_np(self.logits[e], self.conf[e]), dtype=np.float64)
                    for e in range(self.num_exits)]
            self._cache[key] = _readonly(np.stack(rows))
        return self._cache[key]

    def confidence_scores(self, criterion: str) -> np.ndarray:
        """float64 [E-1, N] for the early exits, oriented so an input exits iff value >= t.

        Equal to the criterion's score when higher is confident, its negation otherwise
        (entropy); :func:`oriented_thresholds` maps thresholds the same way.
        """
        crit = CRITERIA.get(criterion)
        key = ("confidence", crit.name)
        if key not in self._cache:
            s = self.scores(crit.name)[:-1]
            self._cache[key] = s if crit.higher_is_confident else _readonly(-s)
        return self._cache[key]

    def save_npz(self, path: str | Path) -> None:
        np.savez_compressed(path, logits=self.logits, conf=self.conf, labels=self.labels)

    @classmethod
    def load_npz(cls, path: str | Path) -> ExitOutputs:
        try:
            with np.load(path) as data:
                return cls(data["logits"], data["conf"], data["labels"])
        except FileNotFoundError:
            raise DataError(f"{path}: cached exit outputs not found") from None
        except (KeyError, ValueError, OSError) as err:
            raise DataError(f"{path}: not a cached exit-outputs file (logits, conf, labels): {err}") from None


def oriented_thresholds(criterion: str, thresholds: Any) -> np.ndarray:
    """Thresholds in the orientation of :meth:`ExitOutputs.confidence_scores` (float64)."""
    t = np.asarray(thresholds, dtype=np.float64)
    return t if CRITERIA.get(criterion).higher_is_confident else -t


def per_exit_thresholds(thresholds: Any, num_early: int, where: str = "thresholds") -> np.ndarray:
    """float64 [E-1]: :func:`dse.models.criteria.per_exit_thresholds` as an array."""
    return np.asarray(criterion_thresholds(thresholds, num_early, where), dtype=np.float64)


def _numpy(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """A numpy copy of an array or a (possibly GPU, grad-tracking) tensor, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view
