"""Scoring every subset of fine-tuned exits at once, on cached logits (numpy only).

Classifier ensemble (Hirose et al., IEEE Access 2020, eq. 4-5): with z_b the logits of exit b
(b = 1..B, the final exit last), the ensemble prediction at exit b is the mean of the logits of
exits 1..b, before any softmax:

    y*_b = (1 / b) sum_{j <= b} z_j.

A subset T of exits is fine-tuned; the others keep their original parameters. With L0 [B, N, K]
the original and L1 the fine-tuned per-exit logits on the same inputs, and m in {0, 1}^B the
subset's mask, the last-exit ensemble is

    y*_B(m) = (1 / B) [sum_b L0_b + sum_b m_b (L1_b - L0_b)],

so all 2^B subsets are one matrix product ``masks [S, B] x (L1 - L0) [B, N*K]`` on top of a
shared base sum (done in chunks of subsets to bound memory). Subset s has exit b in it when bit
b of s is set; a subset is written as a pattern such as ``BFBFF`` (F = fine-tuned, B = base),
exit 1 first.

Choosing a subset (:func:`one_se_subset`): a score on a few hundred images is noisy (two
subsets often differ by one or two images), so the subset with the highest score is not
reliably better than a cheaper one. The *one-standard-error rule* (Breiman et al., CART, 1984;
Hastie et al., ESL, 2nd ed., sec. 7.10) takes the best score, the standard error of every
subset's *paired* score difference to it (same images: se = sd(c_T - c_best) / sqrt(N) with
c the per-image 0/1 correctness), and picks the cheapest subset (fewest training operations)
whose score is within one standard error of the best.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: the [S, N, K] ensemble logits of one chunk hold at most this many values
_CHUNK_VALUES = 1 << 24
MAX_EXITS = 16


def subset_masks(num_exits: int) -> np.ndarray:
    """bool [2^B, B]: row s marks the exits of subset s (bit b of s = exit b + 1)."""
    if not 1 <= num_exits <= MAX_EXITS:
        raise ValueError(f"subset scoring supports 1..{MAX_EXITS} exits, got {num_exits}")
    s = np.arange(2 ** num_exits)[:, None]
    return ((s >> np.arange(num_exits)[None, :]) & 1).astype(bool)


def pattern(mask: Sequence[bool]) -> str:
    """``[True, False, True]`` -> ``"FBF"`` (F = fine-tuned, B = base), exit 1 first."""
    return "".join("F" if m else "B" for m in mask)


def parse_pattern(text: str) -> np.ndarray:
    """``"FBF"`` -> bool array; anything but F/B letters is a ValueError."""
    if not text or set(text) - {"F", "B"}:
        raise ValueError(f"a subset pattern is made of F and B letters, got {text!r}")
    return np.array([c == "F" for c in text], dtype=bool)


def ensemble_logits(logits: np.ndarray) -> np.ndarray:
    """[B, N, K] -> [B, N, K]: y*_b, the running mean of the logits of exits 1..b."""
    logits = np.asarray(logits, dtype=np.float64)
    counts = np.arange(1, logits.shape[0] + 1, dtype=np.float64)[:, None, None]
    return np.cumsum(logits, axis=0) / counts


def ensemble_accuracy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float [B]: accuracy of the ensemble y*_b at every exit b (anytime view)."""
    pred = ensemble_logits(logits).argmax(axis=2)
    return (pred == np.asarray(labels)[None, :]).mean(axis=1)


def mixed_logits(base: np.ndarray, tuned: np.ndarray, mask: Sequence[bool]) -> np.ndarray:
    """[B, N, K]: the tuned logits for exits in ``mask``, the base ones elsewhere."""
    m = np.asarray(mask, dtype=bool)[:, None, None]
    return np.where(m, tuned, base)


def _check(base, tuned, labels, masks):
    base = np.asarray(base, dtype=np.float64)
    tuned = np.asarray(tuned, dtype=np.float64)
    labels = np.asarray(labels)
    if base.shape != tuned.shape or base.ndim != 3 or labels.shape != base.shape[1:2]:
        raise ValueError(f"shapes disagree: base {base.shape}, tuned {tuned.shape}, "
                         f"labels {labels.shape} (expected [B, N, K], [B, N, K], [N])")
    masks = subset_masks(base.shape[0]) if masks is None else np.asarray(masks, dtype=bool)
    return base, tuned, labels, masks


def _correct_chunks(base, tuned, labels, masks):
    """Yield (start, bool [s, N]): per-image correctness of the last-exit ensemble of a chunk
    of subsets (the chunks bound memory)."""
    num_exits, n, k = base.shape
    base_sum = base.sum(axis=0)                         # [N, K]
    delta = (tuned - base).reshape(num_exits, n * k)    # [B, N*K]
    chunk = max(1, _CHUNK_VALUES // max(1, n * k))
    for start in range(0, masks.shape[0], chunk):
        m = masks[start:start + chunk].astype(np.float64)           # [s, B]
        ens = base_sum[None] + (m @ delta).reshape(-1, n, k)         # B * y*_B, same argmax
        yield start, ens.argmax(axis=2) == labels[None]


def score_subsets(base: np.ndarray, tuned: np.ndarray, labels: np.ndarray,
                  masks: np.ndarray | None = None) -> np.ndarray:
    """float [S]: last-exit ensemble accuracy of every subset (all 2^B unless ``masks``).

    ``base`` and ``tuned`` are [B, N, K] logits of the same inputs; ``labels`` is [N].
    """
    base, tuned, labels, masks = _check(base, tuned, labels, masks)
    scores = np.empty(masks.shape[0])
    for start, correct in _correct_chunks(base, tuned, labels, masks):
        scores[start:start + correct.shape[0]] = correct.mean(axis=1)
    return scores


def paired_standard_errors(base: np.ndarray, tuned: np.ndarray, labels: np.ndarray,
                           reference: Sequence[bool], masks: np.ndarray | None = None) -> np.ndarray:
    """float [S]: standard error of every subset's score minus the ``reference`` subset's score.

    With d_i = c_T,i - c_ref,i in {-1, 0, 1} the per-image difference of correctness,
    se = sqrt(sum_i (d_i - mean d)^2 / (N - 1) / N) (0 for a subset that agrees with the
    reference on every image, and for N = 1).
    """
    base, tuned, labels, masks = _check(base, tuned, labels, masks)
    n = labels.shape[0]
    ref = next(_correct_chunks(base, tuned, labels, np.asarray(reference, bool)[None]))[1][0]
    out = np.empty(masks.shape[0])
    for start, correct in _correct_chunks(base, tuned, labels, masks):
        d = correct.astype(np.float64) - ref[None].astype(np.float64)
        var = d.var(axis=1, ddof=1) if n > 1 else np.zeros(d.shape[0])
        out[start:start + d.shape[0]] = np.sqrt(var / n)
    return out


def best_subset(scores: np.ndarray, masks: np.ndarray) -> int:
    """Index of the best subset: highest score, then fewest fine-tuned exits, then lowest index."""
    scores = np.asarray(scores)
    size = np.asarray(masks).sum(axis=1)
    order = np.lexsort((np.arange(scores.size), size, -scores))
    return int(order[0])


def one_se_subset(scores: np.ndarray, standard_errors: np.ndarray, costs: np.ndarray,
                  masks: np.ndarray) -> int:
    """Index of the cheapest subset whose score is within one standard error of the best.

    ``standard_errors`` are paired to the best subset (:func:`paired_standard_errors` with
    ``reference = masks[best]``, best = highest score, then cheapest); ``costs`` are the
    subsets' training operations. Ties: cheaper, then higher score, then fewer exits, then
    lower index.
    """
    scores, costs = np.asarray(scores, np.float64), np.asarray(costs, np.float64)
    best = reference_subset(scores, costs)
    within = scores >= scores[best] - np.asarray(standard_errors, np.float64) - 1e-12
    size = np.asarray(masks).sum(axis=1)
    order = np.lexsort((np.arange(scores.size), size, -scores, np.where(within, costs, np.inf)))
    return int(order[0])


def reference_subset(scores: np.ndarray, costs: np.ndarray) -> int:
    """The best subset the standard errors refer to: highest score, then cheapest, then index."""
    scores = np.asarray(scores)
    return int(np.lexsort((np.arange(scores.size), np.asarray(costs), -scores))[0])
