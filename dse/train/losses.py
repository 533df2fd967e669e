"""Exit losses: a registry of pure functions of per-exit outputs.

Every loss takes ``outputs``, one ``(logits [N, K], confidence [N])`` pair per exit with the
final exit last (its confidence is ones), integer ``targets [N]``, and keyword-only
``teacher_logits`` / ``exit_costs`` that a loss may ignore, plus its own parameters.
Exits are numbered n = 1..E below; E is the final exit, CE is the batch-mean cross-entropy.

- ``ce``: L = sum_n w_n CE(z_n, t); w is ``uniform`` (w_n = 1, as MSDNet), ``increasing``
  (w_n = n / E) or an explicit list with one weight per exit.
- ``eenet``: the cost-aware loss of EENets (Demir, "Early-exit convolutional neural networks",
  METU thesis 2019; Demir & Akbas). With y_n = softmax(z_n), h_n the confidence (h_E = 1) and
  c_n the normalised cumulative MACs of exit n (c_E = 1):
  Y_E = y_E, Y_n = h_n y_n + (1 - h_n) Y_{n+1};  C_E = c_E, C_n = h_n c_n + (1 - h_n) C_{n+1}.
  v1: L = CE(Y_1, t) + lam * mean(C_1).
  v2: L = sum_{n=1..E} [CE(Y_n, t) + lam * mean(C_n)]  (the n = E term is CE(y_E, t) + lam).
  Both exactly as ``loss_v1`` / ``loss_v2`` in the author's code (eksuas/eenets.pytorch,
  loss_functions.py), where CE(Y, t) = nll_loss(Y.log(), t).
- ``kd``: one-for-all distillation from the final head (as IMTA's ``KDLoss``, Li et al. 2019):
  L = CE(z_E, t) + sum_{i<E} [alpha CE(z_i, t) + (1 - alpha) T^2 KL(p_teacher || p_i)],
  p = softmax(z / T), teacher = ``teacher_logits`` or the final head, detached. KL is averaged
  over the batch ("batchmean"; IMTA's KLDivLoss also divides by K).
- ``dense_kd``: dense distillation in the form of HDKD's eq. 4 (Wang and Li, "Harmonized Dense
  Knowledge Distillation Training for Multi-Exit Architectures", AAAI 2021): every exit learns
  from every deeper one, the final head included,
  L = sum_{n=1..E} CE(z_n, t) + lam sum_{i<j} T^2 KL(p_j || p_i), teachers detached. The T^2
  factor (Hinton et al.'s, so gradients keep their size across T) is our choice.
- ``dense_kd_mean``: dse's earlier dense form, kept under its own name (our choice: each early
  exit's distillation is the *mean* over its teachers, so exits with many teachers are not
  weighted up, and alpha trades CE against distillation as in ``kd``):
  L = CE(z_E, t) + sum_{i<E} [alpha CE(z_i, t)
      + (1 - alpha) T^2 mean_{j>i} KL(p_j || p_i)], teachers detached.
- ISC (``isc=True`` in :func:`compute_loss`, or :func:`isc_combine`): inline subnetwork
  collaboration. IMTA feeds exit i-1's prediction through Linear-BN-ReLU into exit i's
  classifier; the parameter-free proxy used here adds it: z'_1 = z_1,
  z'_i = z_i + stopgrad(z'_{i-1}), so no gradient reaches an earlier exit through that path.
  IMTA applies it to every later classifier, the final one included (``isc_final=True``, what
  joint training uses); with a frozen backbone the final head is the backbone's own and keeps
  its logits. IMTA's learned transform is :class:`dse.models.multiexit.IscTransform`
  (``dse train --isc-transform learned``), applied by the model itself.

:func:`compute_loss` checks the value and turns NaN / inf into :class:`TrialFailed`, so a
diverging trial stops with a reason instead of crashing the search.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dse.design.losses import LossSpec, validate_loss_params
from dse.errors import ConfigError, TrialFailed
from dse.registry import Registry

ExitOutput = tuple[Tensor, Tensor]  # (logits [N, K], confidence [N])
LossFn = Callable[..., Tensor]

#: the implementations, one per name declared in :data:`dse.design.losses.LOSS_KINDS` (which
#: holds each loss's parameters and defaults; a test checks the signatures match)
LOSSES: Registry[LossFn] = Registry("loss", "dse.losses")  # plugins: dse.design.losses
#: clamp for log(Y) of EENet's mixed probabilities (the reference takes log() unclamped)
_TINY_PROB = 1e-30


def ce_weights(weights: str | Sequence[float], num_exits: int) -> list[float]:
    """Per-exit CE weights: ``uniform`` -> 1, ``increasing`` -> n / E, or the given list."""
    if weights == "uniform":
        return [1.0] * num_exits
    if weights == "increasing":
        return [n / num_exits for n in range(1, num_exits + 1)]
    if isinstance(weights, str):
        raise ConfigError(f"loss ce: weights must be 'uniform', 'increasing' or a list, got {weights!r}")
    if len(weights) != num_exits:
        raise ConfigError(
            f"loss ce: weights has {len(weights)} entries but the model has {num_exits} exits "
            "(including the final one)"
        )
    return [float(w) for w in weights]


@LOSSES.register("ce")
def ce_loss(outputs: Sequence[ExitOutput], targets: Tensor, *, teacher_logits: Tensor | None = None,
            exit_costs: Sequence[float] | None = None,
            weights: str | Sequence[float] = "uniform") -> Tensor:
    """L = sum_n w_n CE(z_n, t) over every exit, the final one included."""
    w = ce_weights(weights, len(outputs))
    return _sum(wn * F.cross_entropy(z, targets) for wn, (z, _) in zip(w, outputs))


@LOSSES.register("eenet")
def eenet_loss(outputs: Sequence[ExitOutput], targets: Tensor, *, teacher_logits: Tensor | None = None,
               exit_costs: Sequence[float] | None = None, version: str = "v1",
               lam: float = 1.0) -> Tensor:
    """EENet cost-aware loss, v1 or v2 (formulas in the module docstring)."""
    if version not in ("v1", "v2"):
        raise ConfigError(f"loss eenet: version must be 'v1' or 'v2', got {version!r}")
    if exit_costs is None or len(exit_costs) != len(outputs):
        raise ValueError(f"loss eenet needs one exit cost per exit ({len(outputs)}), got {exit_costs!r}")

    def term(cum_pred: Tensor, cum_cost: Tensor) -> Tensor:
        return F.nll_loss(cum_pred.clamp_min(_TINY_PROB).log(), targets) + lam * cum_cost.mean()

    final_logits = outputs[-1][0]
    cum_pred = torch.softmax(final_logits, dim=-1)                                 # Y_E = y_E
    cum_cost = torch.full(targets.shape, float(exit_costs[-1]), dtype=cum_pred.dtype,
                          device=cum_pred.device)                                  # C_E = c_E
    terms = [term(cum_pred, cum_cost)] if version == "v2" else []
    for n in range(len(outputs) - 2, -1, -1):
        logits, h = outputs[n]
        h = h.reshape(-1)
        cum_pred = h[:, None] * torch.softmax(logits, dim=-1) + (1 - h[:, None]) * cum_pred
        cum_cost = h * float(exit_costs[n]) + (1 - h) * cum_cost
        if version == "v2":
            terms.append(term(cum_pred, cum_cost))
    return term(cum_pred, cum_cost) if version == "v1" else _sum(terms)


def distill_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                    F.log_softmax(teacher_logits / temperature, dim=-1),
                    reduction="batchmean", log_target=True)


@LOSSES.register("kd")
def kd_loss(outputs: Sequence[ExitOutput], targets: Tensor, *, teacher_logits: Tensor | None = None,
            exit_costs: Sequence[float] | None = None, alpha: float = 0.5,
            temperature: float = 3.0) -> Tensor:
    """One-for-all distillation from the final head (or ``teacher_logits``)."""
    final = outputs[-1][0]
    teacher = (final if teacher_logits is None else teacher_logits).detach()
    t2 = temperature ** 2
    loss = F.cross_entropy(final, targets)
    for z, _ in outputs[:-1]:
        kl = distill_kl(teacher, z, temperature)
        loss = loss + alpha * F.cross_entropy(z, targets) + (1 - alpha) * t2 * kl
    return loss


def _teachers(outputs: Sequence[ExitOutput], teacher_logits: Tensor | None) -> list[Tensor]:
    """Every exit's detached logits, the final one replaced by ``teacher_logits`` if given."""
    logits = [z.detach() for z, _ in outputs[:-1]]
    logits.append((outputs[-1][0] if teacher_logits is None else teacher_logits).detach())
    return logits


@LOSSES.register("dense_kd")
def dense_kd_loss(outputs: Sequence[ExitOutput], targets: Tensor, *,
                  teacher_logits: Tensor | None = None, exit_costs: Sequence[float] | None = None,
                  lam: float = 1.0, temperature: float = 3.0) -> Tensor:
    """HDKD eq. 4: sum of every exit's CE plus lam times the KD of every (student, deeper
    teacher) pair."""
    teachers = _teachers(outputs, teacher_logits)
    t2 = temperature ** 2
    loss = _sum(F.cross_entropy(z, targets) for z, _ in outputs)
    for i, (z, _) in enumerate(outputs[:-1]):
        loss = loss + lam * t2 * _sum(distill_kl(teacher, z, temperature)
                                      for teacher in teachers[i + 1:])
    return loss


@LOSSES.register("dense_kd_mean")
def dense_kd_mean_loss(outputs: Sequence[ExitOutput], targets: Tensor, *,
                       teacher_logits: Tensor | None = None,
                       exit_costs: Sequence[float] | None = None, alpha: float = 0.5,
                       temperature: float = 3.0) -> Tensor:
    """Dense distillation, our mean form: exit i learns from exits i+1..E (mean of KLs)."""
    final = outputs[-1][0]
    logits = _teachers(outputs, teacher_logits)
    t2 = temperature ** 2
    loss = F.cross_entropy(final, targets)
    for i, (z, _) in enumerate(outputs[:-1]):
        kl = _sum(distill_kl(teacher, z, temperature) for teacher in logits[i + 1:])
        kl = kl / (len(logits) - i - 1)
        loss = loss + alpha * F.cross_entropy(z, targets) + (1 - alpha) * t2 * kl
    return loss


def isc_combine(logits: Sequence[Tensor], *, include_final: bool = False) -> list[Tensor]:
    """Inline subnetwork collaboration: z'_1 = z_1, z'_i = z_i + z'_{i-1}.detach().

    The final head keeps its own logits unless ``include_final`` (it is the frozen backbone's
    head during proxy training). Inference must apply the same combination.
    """
    combined: list[Tensor] = []
    last = len(logits) - 1
    for i, z in enumerate(logits):
        if i == 0 or (i == last and not include_final):
            combined.append(z)
        else:
            combined.append(z + combined[i - 1].detach())
    return combined


def compute_loss(name: str, outputs: Sequence[ExitOutput], targets: Tensor, *,
                 teacher_logits: Tensor | None = None, exit_costs: Sequence[float] | None = None,
                 isc: bool = False, isc_final: bool = False, step: int | None = None,
                 **params: Any) -> Tensor:
    """Look up loss ``name``, apply ISC if asked, evaluate it, and stop the trial on NaN / inf.

    ``isc_final``: ISC reaches the final head too (joint training). Raises
    :class:`TrialFailed` (``"loss became nan at step 12 ..."``) instead of returning a
    non-finite value.
    """
    fn = LOSSES.get(name)
    validate_loss_params(LOSSES.resolve(name), params)
    if not outputs:
        raise ValueError("compute_loss needs at least one exit output (the final exit)")
    if isc:
        combined = isc_combine([z for z, _ in outputs], include_final=isc_final)
        outputs = [(z, h) for z, (_, h) in zip(combined, outputs)]
    loss = fn(outputs, targets, teacher_logits=teacher_logits, exit_costs=exit_costs, **params)
    if not bool(torch.isfinite(loss).all()):
        what = "nan" if bool(torch.isnan(loss).any()) else "inf"
        where = f" at step {step}" if step is not None else ""
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
        raise TrialFailed(f"loss became {what}{where} (loss {name!r}{', ' if shown else ''}{shown}); "
                          "the trial stops (a lower learning rate may help)")
    return loss


def apply_loss(spec: LossSpec, outputs: Sequence[ExitOutput], targets: Tensor, *,
               teacher_logits: Tensor | None = None, exit_costs: Sequence[float] | None = None,
               step: int | None = None, isc_final: bool = False) -> Tensor:
    """Evaluate the loss a :class:`~dse.design.losses.LossSpec` names (see :func:`compute_loss`)."""
    return compute_loss(spec.name, outputs, targets, teacher_logits=teacher_logits,
                        exit_costs=exit_costs, isc=spec.isc, isc_final=isc_final, step=step,
                        **spec.kwargs)


def _sum(terms: Any) -> Tensor:
    terms = list(terms)
    if not terms:
        raise ValueError("a loss needs at least one term (is there an early exit?)")
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total
