"""Gradient equilibrium, ISC, HDKD's bilevel weight step and the balanced validation loss,
checked against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dse.errors import ConfigError
from dse.models.backbones import Backbone
from dse.models.multiexit import MultiExitNet
from dse.train.losses import compute_loss
from dse.train.techniques import (BalancedValLoss, HdkdTerms, ge_scales, grad_scale,
                                  gradient_equilibrium, hdkd_gamma_step, per_exit_ce,
                                  project_gamma)

torch.set_num_threads(1)


class Scale(nn.Module):
    """y = w * x with one scalar weight."""

    def __init__(self, w: float = 1.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        return self.w * x


class ScaleExit(nn.Module):
    """An exit branch: logits = v * x, confidence 1."""

    def __init__(self, v: float = 1.0) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.tensor(float(v)))

    def forward(self, x):
        return self.v * x.flatten(1), torch.ones(x.shape[0])


def chain(block_weights, exit_blocks, branch_weights=None) -> MultiExitNet:
    blocks = [Scale(w) for w in block_weights]
    branches = [ScaleExit(v) for v in (branch_weights or [1.0] * len(exit_blocks))]
    return MultiExitNet(Backbone(blocks, nn.Flatten(1)), exit_blocks, branches)


def grads(model: MultiExitNet, losses) -> dict[str, float]:
    model.zero_grad(set_to_none=True)
    losses.backward()
    return {n: float(p.grad) if p.grad is not None else 0.0 for n, p in model.named_parameters()}


# ----------------------------------------------------------------------------- GE


def test_ge_scales_formula():
    # k = 4 exits: branch side 1/(k-s+1) = 1/4, 1/3, 1/2; onward k - s = 3, 2, 1
    assert ge_scales(4) == [(0.25, 3.0), (1 / 3, 2.0), (0.5, 1.0)]
    assert ge_scales(1) == []


def test_ge_identical_losses_on_a_chain_give_every_block_the_mean():
    # 4 blocks, an exit after blocks 0, 1, 2 and the final head: k = 4 exits. Every weight is 1
    # and the input is 1, so each exit's loss L_j = z_j is 1 and dL_j/dw_i = 1 for j reaching
    # block i. Without GE block i collects k - i such gradients (4, 3, 2, 1); with GE each one
    # is scaled by 1 / (k - i), so every block receives exactly 1. Branches keep theirs (1).
    model = chain([1, 1, 1, 1], [0, 1, 2])
    x = torch.ones(1, 1)
    plain = grads(model, sum(z.sum() for z, _ in model(x)))
    assert [plain[f"backbone.blocks.{i}.w"] for i in range(4)] == [4.0, 3.0, 2.0, 1.0]
    with gradient_equilibrium(model):
        ge = grads(model, sum(z.sum() for z, _ in model(x)))
    assert [ge[f"backbone.blocks.{i}.w"] for i in range(4)] == pytest.approx([1.0] * 4, abs=1e-7)
    assert [ge[f"branches.{i}.v"] for i in range(3)] == [1.0, 1.0, 1.0]


def test_ge_general_rule_each_later_loss_scaled_by_one_over_k_minus_s_plus_one():
    # Exits after blocks 1 and 3 of a 6-block chain (k = 3): segment 1 = blocks 0-1 gets
    # (g1 + g2 + g3) / 3, segment 2 = blocks 2-3 gets (g2 + g3) / 2, segment 3 = blocks 4-5 g3.
    torch.manual_seed(0)
    weights = [1.5, -0.7, 2.0, 0.9, -1.3, 1.1]
    model = chain(weights, [1, 3], [0.8, -1.2])
    x = torch.tensor([[0.6], [-1.1]])

    def losses():
        return [(z ** 2).sum() * (j + 1) for j, (z, _) in enumerate(model(x))]  # all different

    separate = [grads(model, losses()[j]) for j in range(3)]
    with gradient_equilibrium(model):
        total = grads(model, sum(losses()))
    segment = [1, 1, 2, 2, 3, 3]
    for i, s in enumerate(segment):
        name = f"backbone.blocks.{i}.w"
        expected = sum(separate[j][name] for j in range(s - 1, 3)) / (3 - s + 1)
        assert total[name] == pytest.approx(expected, rel=1e-6)
    for b in range(2):  # a branch sees only its own loss, unscaled
        assert total[f"branches.{b}.v"] == pytest.approx(separate[b][f"branches.{b}.v"], rel=1e-6)


def test_ge_leaves_the_forward_pass_unchanged_and_removes_its_hooks():
    model = chain([1.5, -0.7, 2.0, 0.9], [0, 2])
    x = torch.randn(3, 1)
    before = [z.detach() for z, _ in model(x)]
    with gradient_equilibrium(model):
        during = [z.detach() for z, _ in model(x)]
    after = grads(model, sum(z.sum() for z, _ in model(x)))
    for a, b in zip(before, during):
        assert torch.equal(a, b)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert after["backbone.blocks.0.w"] == pytest.approx(float(
        torch.autograd.grad(sum(z.sum() for z, _ in model(x)), model.backbone.blocks[0].w)[0]))


def test_grad_scale_is_identity_forward_and_twice_differentiable():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = grad_scale(x, 0.25)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    assert g.tolist() == pytest.approx([0.25 * 3 * 1.0, 0.25 * 3 * 4.0])
    # g = 0.25 * 3 y^2 with y = grad_scale(x): differentiating g goes through the op again
    (gg,) = torch.autograd.grad(g.sum(), x)
    assert gg.tolist() == pytest.approx([0.25 * 0.25 * 6 * 1.0, 0.25 * 0.25 * 6 * -2.0])


# ----------------------------------------------------------------------------- ISC


def test_isc_passes_earlier_logits_forward_but_no_gradient_back():
    # CE on exit 2 only (weights 0, 1, 0). With ISC exit 2 predicts with z2 + z1 (so the loss
    # changes), but z1 is detached: exit 1's branch gets no gradient from it.
    torch.manual_seed(0)
    model = chain([1.2, 0.8, 1.1], [0, 1], [0.7, 1.3])
    x = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    outs = model(x)
    isc = compute_loss("ce", outs, y, isc=True, weights=[0, 1, 0])
    plain = compute_loss("ce", outs, y, isc=False, weights=[0, 1, 0])
    z1, z2 = outs[0][0], outs[1][0]
    assert float(isc.detach()) == pytest.approx(float(nn.functional.cross_entropy(z2 + z1, y).detach()))
    assert float(isc.detach()) != pytest.approx(float(plain.detach()))
    g = grads(model, isc)
    assert g["branches.0.v"] == 0.0
    assert g["branches.1.v"] != 0.0


# ----------------------------------------------------------------------------- HDKD


def test_hdkd_gamma_moves_toward_the_loss_whose_step_lowers_the_validation_loss():
    # theta = 0; term_a = (theta - 1)^2 pulls towards 1, term_b = (theta + 1)^2 towards -1;
    # L_val = (theta - 1)^2. With gamma = (1, 1): theta' = theta - xi (2 (theta-1) + 2 (theta+1))
    # = 0, dtheta'/dgamma_a = -xi * 2(theta - 1) = 2 xi, dtheta'/dgamma_b = -2 xi,
    # dL_val/dtheta' = 2 (theta' - 1) = -2, so grad_gamma = (-4 xi, +4 xi) and
    # gamma -> (1 + 4 xi eps, 1 - 4 xi eps), already summing to 2.
    theta = torch.tensor(0.0, requires_grad=True)
    xi, eps = 0.1, 0.5

    def train_terms(p):
        return torch.stack([(p["theta"] - 1) ** 2, (p["theta"] + 1) ** 2])

    gamma, terms = hdkd_gamma_step({"theta": theta}, torch.ones(2), train_terms,
                                   lambda p: (p["theta"] - 1) ** 2, xi, eps)
    assert gamma.tolist() == pytest.approx([1 + 4 * xi * eps, 1 - 4 * xi * eps])
    assert terms.tolist() == [1.0, 1.0]
    (terms * gamma).sum().backward()  # the returned terms still carry their graph
    assert float(theta.grad) == pytest.approx(gamma[0] * -2 + gamma[1] * 2)


def test_hdkd_projection_clips_and_keeps_the_total():
    assert project_gamma(torch.tensor([3.0, -1.0, 1.0]), 2.0).tolist() == pytest.approx([1.5, 0, 0.5])
    assert project_gamma(torch.tensor([-1.0, -2.0]), 2.0).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("loss, params", [
    ("dense_kd", {"lam": 0.7, "temperature": 2.0}),
    ("dense_kd_mean", {"alpha": 0.3, "temperature": 2.0}),
    ("kd", {"alpha": 0.6, "temperature": 4.0}),
    ("ce", {"weights": [0.2, 0.5, 0.7, 1.0]}),
])
@pytest.mark.parametrize("isc, isc_final", [(False, False), (True, False), (True, True)])
def test_hdkd_terms_with_initial_weights_equal_the_config_loss(loss, params, isc, isc_final):
    torch.manual_seed(1)
    outs = [(torch.randn(5, 3), torch.rand(5)) for _ in range(4)]
    y = torch.tensor([0, 1, 2, 0, 1])
    terms = HdkdTerms(loss, 4, params, isc, isc_final)
    expected = compute_loss(loss, outs, y, isc=isc, isc_final=isc_final, **params)
    got = (terms.initial * terms([z for z, _ in outs], y)).sum()
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    n_kd = {"dense_kd": 6, "dense_kd_mean": 6, "kd": 3, "ce": 0}[loss]
    assert len(terms.names) == 4 + n_kd


def test_hdkd_rejects_losses_without_ce_terms():
    with pytest.raises(ConfigError, match="training.loss must be ce, kd, dense_kd or dense_kd_mean, got 'eenet'"):
        HdkdTerms("eenet", 3, {}, False)


# ----------------------------------------------------------------- balanced validation loss


def test_balanced_validation_loss_matches_hand_computation():
    loss = BalancedValLoss(alpha=0.5, momentum=0.9)
    # first call: EMA = CE = (1, 2), ratios 1, softplus(0) = ln 2 each
    first = loss(torch.tensor([1.0, 2.0]))
    assert float(first) == pytest.approx(0.5 * 3 + 0.5 * 2 * math.log(2))
    # second: EMA = 0.9 (1, 2) + 0.1 (2, 2) = (1.1, 2); ratios 2/1.1 and 1
    ce = torch.tensor([2.0, 2.0], requires_grad=True)
    second = loss(ce)
    softplus = math.log1p(math.exp(2 / 1.1 - 1))
    assert float(second.detach()) == pytest.approx(0.5 * 4 + 0.5 * (softplus + math.log(2)))
    assert loss.ema.tolist() == pytest.approx([1.1, 2.0])
    # the EMA is a constant for the gradient: d/dce_1 = 0.5 + 0.5 sigmoid(r - 1) / 1.1
    second.backward()
    sig = 1 / (1 + math.exp(-(2 / 1.1 - 1)))
    assert ce.grad.tolist() == pytest.approx([0.5 + 0.5 * sig / 1.1, 0.5 + 0.5 * 0.5 / 2.0])


def test_balanced_loss_range_checks_and_per_exit_ce():
    with pytest.raises(ConfigError, match="alpha in"):
        BalancedValLoss(alpha=1.5)
    z = [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3)]])]
    ce = per_exit_ce(z, torch.tensor([1]))
    assert ce.tolist() == pytest.approx([math.log(2), -math.log(0.75)])
    ce_isc = per_exit_ce(z, torch.tensor([1]), isc=True)  # final exit keeps its own logits
    assert ce_isc.tolist() == pytest.approx(ce.tolist())
