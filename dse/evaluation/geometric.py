"""MSDNet's geometric exit probabilities and the per-exit thresholds that realise them.

For q > 0, the exit probabilities follow a geometric law p_k = q^k / sum_{j=1..E} q^j (Huang et
al., ICLR 2018, ``dynamic_eval_find_threshold`` in IMTA's code, Li et al., ICCV 2019); walking
the early exits in order, the threshold of exit k is the score of the floor(N p_k)-th most
confident val input among those still in the network. Used by the budget calibration
(:mod:`dse.evaluation.budget`) and threshold re-tuning (:mod:`dse.evaluation.retune`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dse.evaluation.outputs import ExitOutputs, oriented_thresholds

#: q grid of the geometric exit-probability scheme (MSDNet uses q = 0.05 .. 2 in steps of 0.05)
DEFAULT_Q_GRID = np.geomspace(0.02, 50.0, 121)


def geometric_exit_probs(q: Any, num_exits: int) -> np.ndarray:
    """[Q, E] exit probabilities p_k = q^k / sum_j q^j, k = 1..E (MSDNet's geometric law)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1, 1)
    logp = np.log(q) * np.arange(1, num_exits + 1)[None, :]
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def thresholds_for_exit_probs(outputs: ExitOutputs, criterion: str, probs: Any) -> np.ndarray:
    """[Q, E-1] per-exit thresholds making a fraction ``probs[q, k]`` of inputs leave at exit k.

    Exit k takes the floor(N p_k) most confident inputs still undecided (ties may take a few
    more; if fewer remain, all of them). Returned in the criterion's own orientation.
    """
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    scores = outputs.confidence_scores(criterion)  # exit iff >= t
    n, early = outputs.num_samples, outputs.num_exits - 1
    order = [np.argsort(-scores[k], kind="stable") for k in range(early)]
    ranked = [scores[k][order[k]] for k in range(early)]
    result = np.full((probs.shape[0], early), np.inf)
    for i, p in enumerate(probs):
        undecided = np.ones(n, dtype=bool)
        for k in range(early):
            want = int(np.floor(n * p[k] + 1e-9))
            running = np.cumsum(undecided[order[k]])
            if want <= 0 or running[-1] == 0:
                continue
            pos = min(int(np.searchsorted(running, min(want, running[-1]), side="left")), n - 1)
            result[i, k] = ranked[k][pos]
            undecided &= ~(scores[k] >= result[i, k])
    return oriented_thresholds(criterion, result)  # negation maps back for entropy
