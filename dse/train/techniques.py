"""Full-training techniques for multi-exit networks: gradient equilibrium and harmonized dense KD.

**Gradient equilibrium** (GE; Li et al., "Improved Techniques for Training Adaptive Deep
Networks", ICCV 2019, section 3.1 and ``gradient_rescale`` in ``kalviny/IMTA``). With k exits
(the final head included), exit s = 1..k at block b_s, segment s is the run of blocks after
b_{s-1} up to b_s (the last segment ends at the head). Two gradient re-scaling ops (identity
forward, scaled backward) sit at every early exit's attach point::

    h = block_{b_s}(...)            # end of segment s
    h = rescale(h, 1 / (k - s + 1)) # what branch s and the next segment read
    z_s = branch_s(h)
    h = rescale(h, k - s)           # only on the path into block b_s + 1

Backward, the gradient at the end of segment s is
D_s = (g_s + (k - s) * J^T D_{s+1}) / (k - s + 1), with g_s exit s's own gradient, so by
induction every block of segment s receives exactly ``1 / (k - s + 1)`` of the gradient of each
loss j >= s (the mean over the losses that reach it instead of their sum); the branches' own
gradients are unchanged, and the forward pass is unchanged (the ops return their input).

**Harmonized dense KD** (HDKD; Wang and Li, "Harmonized Dense Knowledge Distillation Training
for Multi-Exit Architectures", AAAI 2021). The training loss is sum_t gamma_t * term_t over the
per-exit CE terms and the distillation terms T^2 KL(p_j || p_i) (exit i from a later exit j),
gamma starting at the config loss's own weights. Every step, with theta the trained parameters:

    theta' = theta - xi * grad_theta sum_t gamma_t term_t(theta)      (one virtual SGD step)
    gamma <- gamma - eps * grad_gamma L_val(theta')                   (on a validation batch)

then gamma is clipped at 0 and rescaled to its initial sum (so the overall step size does not
drift; this projection is our addition, the paper states the plain gradient step), and theta
takes its ordinary optimizer step with the new gamma. ``L_val`` is the
*balanced validation loss*: alpha sum_k CE_k + (1 - alpha) sum_k softplus(CE_k / E[CE_k] - 1),
E[CE_k] an exponential moving average (momentum m = 0.9) that discounts exits whose loss is
simply large. :class:`HdkdTraining` carries gamma, the EMA and the validation batches through a
training loop (``dse train --hdkd``), resumable from its state dict.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from dse.errors import ConfigError, TrialFailed
from dse.train.losses import LossSpec, ce_weights, distill_kl, isc_combine

# ----------------------------------------------------------------------- gradient equilibrium


class _GradScale(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.clone()  # a copy, not a view: later blocks may modify it in place

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        # differentiable (HDKD's second-order step goes through it): at every order the op
        # acts as if its derivative were ``scale``
        return grad * ctx.scale, None


def grad_scale(x: Tensor, scale: float) -> Tensor:
    """``x`` unchanged forward; its gradient is multiplied by ``scale`` backward."""
    return _GradScale.apply(x, float(scale))


def ge_scales(num_exits: int) -> list[tuple[float, float]]:
    """(branch-side scale 1/(k-s+1), onward scale k-s) at each early exit s = 1..k-1."""
    k = num_exits
    return [(1.0 / (k - s + 1), float(k - s)) for s in range(1, k)]


def _scale_each(x, scale: float):  # noqa: ANN001, ANN202
    """:func:`grad_scale` on a block's output: a tensor, or every scale of a multi-scale list
    (MSDNet; IMTA's ``msdnet_ge.py`` re-scales each scale the same way)."""
    if isinstance(x, (list, tuple)):
        return [grad_scale(t, scale) for t in x]
    return grad_scale(x, scale)


@contextlib.contextmanager
def gradient_equilibrium(model: nn.Module) -> Iterator[None]:
    """Install GE's re-scaling ops on a :class:`~dse.models.multiexit.MultiExitNet` for the
    duration of the block (forward hooks on the exit blocks, pre-hooks on the blocks after)."""
    blocks, exit_blocks = model.backbone.blocks, list(model.exit_blocks)
    handles = []
    for (branch_side, onward), b in zip(ge_scales(len(exit_blocks) + 1), exit_blocks):
        handles.append(blocks[b].register_forward_hook(
            lambda _m, _inp, out, s=branch_side: _scale_each(out, s)))
        handles.append(blocks[b + 1].register_forward_pre_hook(
            lambda _m, inp, s=onward: (_scale_each(inp[0], s), *inp[1:])))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------ balanced validation loss


class BalancedValLoss:
    """alpha sum_k CE_k + (1 - alpha) sum_k softplus(CE_k / E[CE_k] - 1).

    E[CE_k] is an EMA of the detached CE values: ``ema <- m * ema + (1 - m) * CE`` is applied
    first (the first call initialises ``ema = CE``), then the loss uses the updated EMA.
    """

    def __init__(self, alpha: float = 0.5, momentum: float = 0.9) -> None:
        if not 0.0 <= alpha <= 1.0 or not 0.0 <= momentum < 1.0:
            raise ConfigError(f"balanced validation loss needs alpha in [0, 1] and momentum in "
                              f"[0, 1), got alpha={alpha!r}, momentum={momentum!r}")
        self.alpha, self.momentum = float(alpha), float(momentum)
        self.ema: Tensor | None = None

    def __call__(self, ce: Tensor) -> Tensor:
        value = ce.detach()
        self.ema = value.clone() if self.ema is None else \
            self.momentum * self.ema + (1.0 - self.momentum) * value
        ratio = ce / self.ema.clamp_min(1e-12)
        return self.alpha * ce.sum() + (1.0 - self.alpha) * F.softplus(ratio - 1.0).sum()


# -------------------------------------------------------------------- HDKD loss decomposition


class HdkdTerms:
    """The loss terms HDKD weighs, and their initial weights (the config loss's own).

    Terms, in order: CE_1..CE_E (every exit), then T^2 KL(p_j || p_i) for each distilled pair
    (i, j), teacher j detached: every later exit for ``dense_kd`` / ``dense_kd_mean``, the final
    head for ``kd``, none for ``ce``. With the initial weights the weighted sum equals the named
    loss (for ``dense_kd`` that is HDKD's own starting point, eq. 4).
    """

    def __init__(self, loss: str, num_exits: int, params: Mapping[str, object], isc: bool = False,
                 isc_final: bool = False) -> None:
        if loss not in ("ce", "kd", "dense_kd", "dense_kd_mean"):
            raise ConfigError(f"--hdkd weighs CE and distillation terms: training.loss must be ce, "
                              f"kd, dense_kd or dense_kd_mean, got {loss!r}")
        e = num_exits
        self.isc, self.isc_final = isc, isc_final
        self.temperature = float(params.get("temperature", 3.0))  # type: ignore[arg-type]
        alpha = float(params.get("alpha", 0.5))  # type: ignore[arg-type]
        if loss == "ce":
            self.pairs: list[tuple[int, int]] = []
            ce_w = ce_weights(params.get("weights", "uniform"), e)  # type: ignore[arg-type]
            kd_w: list[float] = []
        elif loss == "dense_kd":  # HDKD eq. 4: CE weights 1, every pair lam
            self.pairs = [(i, j) for i in range(e - 1) for j in range(i + 1, e)]
            ce_w = [1.0] * e
            kd_w = [float(params.get("lam", 1.0))] * len(self.pairs)  # type: ignore[arg-type]
        else:
            dense = loss == "dense_kd_mean"
            self.pairs = [(i, j) for i in range(e - 1)
                          for j in (range(i + 1, e) if dense else [e - 1])]
            ce_w = [alpha] * (e - 1) + [1.0]
            kd_w = [(1 - alpha) / ((e - 1 - i) if dense else 1) for i, _ in self.pairs]
        self.names = [f"ce{n + 1}" for n in range(e)] + [f"kd{i + 1}<-{j + 1}" for i, j in self.pairs]
        self.initial = torch.tensor(ce_w + kd_w, dtype=torch.float32)

    def __call__(self, logits: Sequence[Tensor], targets: Tensor) -> Tensor:
        """[T] vector of terms for per-exit ``logits`` (final last)."""
        z = isc_combine(list(logits), include_final=self.isc_final) if self.isc else list(logits)
        t2 = self.temperature ** 2
        terms = [F.cross_entropy(zn, targets) for zn in z]
        terms += [t2 * distill_kl(z[j].detach(), z[i], self.temperature) for i, j in self.pairs]
        return torch.stack(terms)


def per_exit_ce(logits: Sequence[Tensor], targets: Tensor, isc: bool = False,
                isc_final: bool = False) -> Tensor:
    """[E] cross-entropy of every exit (after ISC when the model was trained with it)."""
    z = isc_combine(list(logits), include_final=isc_final) if isc else list(logits)
    return torch.stack([F.cross_entropy(zn, targets) for zn in z])


# ------------------------------------------------------------------------ bilevel gamma step


def project_gamma(gamma: Tensor, total: float) -> Tensor:
    """Clip at 0 and rescale to sum ``total`` (uniform if everything was clipped)."""
    g = gamma.clamp_min(0.0)
    s = float(g.sum())
    return g * (total / s) if s > 0 else torch.full_like(g, total / g.numel())


def hdkd_gamma_step(params: Mapping[str, Tensor], gamma: Tensor,
                    train_terms: Callable[[Mapping[str, Tensor]], Tensor],
                    val_loss: Callable[[Mapping[str, Tensor]], Tensor],
                    xi: float, eps: float, total: float | None = None) -> tuple[Tensor, Tensor]:
    """One bilevel update of the loss weights; returns (new gamma, train terms at ``params``).

    theta' = theta - xi grad_theta (gamma . terms(theta)); gamma <- gamma - eps grad_gamma
    L_val(theta'); then :func:`project_gamma` to ``total`` (default: gamma's current sum).
    The returned terms keep their graph, so the caller can back-propagate the ordinary step.
    """
    names = list(params)
    theta = [params[n] for n in names]
    g = gamma.detach().clone().requires_grad_(True)
    terms = train_terms(params)
    grads = torch.autograd.grad((g * terms).sum(), theta, create_graph=True, allow_unused=True)
    virtual = {n: p - xi * gr if gr is not None else p for n, p, gr in zip(names, theta, grads)}
    (d_gamma,) = torch.autograd.grad(val_loss(virtual), g)
    total = float(gamma.sum()) if total is None else total
    new = project_gamma(gamma.detach() - eps * d_gamma.detach(), total)
    return new, terms


# -------------------------------------------------------------------- HDKD during training


class HdkdTraining:
    """HDKD inside a training loop: the loss weights gamma, the balanced validation loss, and
    seeded validation batches (``seed`` orders them); resumable through its state dict."""

    def __init__(self, loss_spec: LossSpec, num_exits: int, x_val: Tensor, y_val: Tensor, *,
                 eps: float, alpha: float, momentum: float, batch_size: int, seed: int,
                 device: torch.device, isc_final: bool = False) -> None:
        self.terms = HdkdTerms(loss_spec.name, num_exits, loss_spec.kwargs, loss_spec.isc,
                               isc_final)
        self.gamma = self.terms.initial.clone().to(device)
        self.total = float(self.gamma.sum())
        self.balanced = BalancedValLoss(alpha, momentum)
        self.eps, self.batch_size, self.device = eps, batch_size, device
        self.x_val, self.y_val = x_val, y_val
        self.gen = torch.Generator().manual_seed(seed)

    def named_gamma(self) -> dict[str, float]:
        return dict(zip(self.terms.names, self.gamma.tolist()))

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, lr: float, step: int) -> Tensor:
        """Update gamma on a random val batch (virtual step size ``lr``); the weighted loss."""
        vidx = torch.randperm(int(self.y_val.shape[0]), generator=self.gen)[:self.batch_size]
        xv, yv = self.x_val[vidx].to(self.device), self.y_val[vidx].to(self.device)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        buffers = {n: b.clone() for n, b in model.named_buffers()}  # virtual step leaves BN alone

        def train_terms(p):
            return self.terms([z for z, _ in functional_call(model, p, (x,))], y)

        def val_loss(p):
            outs = functional_call(model, {**p, **buffers}, (xv,))
            return self.balanced(per_exit_ce([z for z, _ in outs], yv, self.terms.isc,
                                             self.terms.isc_final))

        self.gamma, terms = hdkd_gamma_step(params, self.gamma, train_terms, val_loss, lr,
                                            self.eps, self.total)
        loss = (self.gamma * terms).sum()
        if not bool(torch.isfinite(loss)):
            raise TrialFailed(f"HDKD loss became {float(loss.detach())} at step {step}; a lower "
                              "--lr or --hdkd-lr may help")
        return loss

    def state_dict(self) -> dict[str, Any]:
        ema = self.balanced.ema
        return {"gamma": self.gamma.cpu(), "ema": ema.cpu() if ema is not None else None,
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gamma = state["gamma"].to(self.device)
        self.balanced.ema = state["ema"].to(self.device) if state["ema"] is not None else None
        self.gen.set_state(state["gen"])
