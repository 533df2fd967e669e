"""Exit criteria: when does an input leave at an early exit?

Each criterion turns an exit's (logits, confidence) into a per-sample *score* such that the
input exits when ``score >= threshold`` (``learned``, ``maxprob``) or ``score <= threshold``
(``entropy``). Scores exist in a numpy form (threshold sweeps on cached outputs) and a torch
form (the real early-exit inference path); both are the same formula, tested equal.

torch is imported inside the torch forms only: the numpy evaluation code
(:mod:`dse.evaluation`) reads this registry and stays free of torch.

- ``learned``: the branch's confidence head h in [0, 1]; exit when h >= T (EENets).
- ``maxprob``: max softmax probability; exit when max_k p_k >= T (BranchyNet-style score).
- ``entropy``: normalised entropy H(p) / log K in [0, 1]; exit when it is <= T (BranchyNet).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from dse.errors import ConfigError
from dse.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Criterion:
    name: str
    #: True when large scores mean confident (exit iff score >= T), False for entropy.
    higher_is_confident: bool
    score_np: Callable[[np.ndarray, np.ndarray], np.ndarray]
    score_torch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def exits_np(self, score: np.ndarray, threshold) -> np.ndarray:
        return score >= threshold if self.higher_is_confident else score <= threshold

    def exits_torch(self, score: torch.Tensor, threshold: float) -> torch.Tensor:
        return score >= threshold if self.higher_is_confident else score <= threshold


CRITERIA: Registry[Criterion] = Registry("exit criterion")


def _softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _norm_entropy_np(logits: np.ndarray, conf: np.ndarray) -> np.ndarray:
    p = _softmax_np(logits.astype(np.float64))
    h = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-1)
    return h / np.log(logits.shape[-1])


def _maxprob_torch(logits: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    import torch  # here, not at the top: see the module docstring

    return torch.softmax(logits.double(), dim=-1).amax(dim=-1).to(logits.dtype)


def _norm_entropy_torch(logits: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    import torch  # here, not at the top: see the module docstring

    logp = torch.log_softmax(logits.double(), dim=-1)
    h = -(logp.exp() * logp.clamp_min(np.log(1e-12))).sum(dim=-1)
    return (h / np.log(logits.shape[-1])).to(logits.dtype)


CRITERIA.add("learned", Criterion(
    "learned", True,
    score_np=lambda logits, conf: np.asarray(conf),
    score_torch=lambda logits, conf: conf,
))
CRITERIA.add("maxprob", Criterion(
    "maxprob", True,
    score_np=lambda logits, conf: _softmax_np(logits.astype(np.float64)).max(axis=-1),
    score_torch=_maxprob_torch,
))
CRITERIA.add("entropy", Criterion(
    "entropy", False, score_np=_norm_entropy_np, score_torch=_norm_entropy_torch,
))


def get_criterion(name: str) -> Criterion:
    return CRITERIA.get(name)


def per_exit_thresholds(thresholds: float | Sequence[float], num_early: int,
                        where: str = "thresholds") -> list[float]:
    """One threshold per early exit: a single (global) value is repeated ``num_early`` times;
    a list must hold exactly ``num_early`` values. The one place this rule is written."""
    if isinstance(thresholds, (int, float)) or getattr(thresholds, "ndim", None) == 0:
        return [float(thresholds)] * num_early
    values = [float(t) for t in thresholds]
    if len(values) == 1:
        return values * num_early
    if len(values) != num_early:
        raise ConfigError(f"{where}: {num_early} early exits need 1 or {num_early} thresholds "
                          f"(one per early exit), got {len(values)}")
    return values
