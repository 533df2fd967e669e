"""Exit losses against values worked out by hand from the papers' equations."""
from __future__ import annotations

import math

import pytest
import torch

from dse.errors import ConfigError, TrialFailed, UnknownNameError
from dse.design.losses import LOSS_KINDS
from dse.train.losses import LOSSES, LossSpec, apply_loss, compute_loss, isc_combine

torch.set_num_threads(1)
LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def pair(logits, conf):
    return torch.tensor(logits, dtype=torch.float64), torch.tensor(conf, dtype=torch.float64)


# ----------------------------------------------------------------------------- EENet
# Three exits, two classes, two inputs. Softmax of [0, ln 3] is [.25, .75], of [0, 0] is
# [.5, .5], of [0, ln 4] is [.2, .8]. Exit costs c = (.25, .5, 1), lambda = .5.
#
# input A (target 1): y1 = [.25, .75] h1 = .5 | y2 = [.5, .5] h2 = .25 | y3 = [.2, .8]
#   Y3 = [.2, .8]                                   C3 = 1
#   Y2 = .25 [.5, .5] + .75 [.2, .8] = [.275, .725] C2 = .25 * .5 + .75 * 1 = .875
#   Y1 = .5 [.25, .75] + .5 Y2 = [.2625, .7375]     C1 = .5 * .25 + .5 * .875 = .5625
# input B (target 0): y1 = [.75, .25] h1 = .8 | y2 = [.25, .75] h2 = .5 | y3 = [.8, .2]
#   Y3 = [.8, .2]                                   C3 = 1
#   Y2 = .5 [.25, .75] + .5 [.8, .2] = [.525, .475] C2 = .5 * .5 + .5 * 1 = .75
#   Y1 = .8 [.75, .25] + .2 Y2 = [.705, .295]       C1 = .8 * .25 + .2 * .75 = .35
EENET_OUTPUTS = [
    pair([[0, LN3], [LN3, 0]], [0.5, 0.8]),
    pair([[0, 0], [0, LN3]], [0.25, 0.5]),
    pair([[0, LN4], [LN4, 0]], [1.0, 1.0]),
]
EENET_TARGETS = torch.tensor([1, 0])
EENET_COSTS = [0.25, 0.5, 1.0]
TERM1 = (-math.log(0.7375) - math.log(0.705)) / 2 + 0.5 * (0.5625 + 0.35) / 2
TERM2 = (-math.log(0.725) - math.log(0.525)) / 2 + 0.5 * (0.875 + 0.75) / 2
TERM3 = (-math.log(0.8) - math.log(0.8)) / 2 + 0.5 * 1.0


def test_eenet_v1_matches_hand_computed_value():
    loss = compute_loss("eenet", EENET_OUTPUTS, EENET_TARGETS, exit_costs=EENET_COSTS,
                        version="v1", lam=0.5)
    assert loss.item() == pytest.approx(TERM1, rel=1e-12)


def test_eenet_v2_sums_the_v1_terms_of_every_exit():
    loss = compute_loss("eenet", EENET_OUTPUTS, EENET_TARGETS, exit_costs=EENET_COSTS,
                        version="v2", lam=0.5)
    assert loss.item() == pytest.approx(TERM1 + TERM2 + TERM3, rel=1e-12)


def test_eenet_cost_term_pushes_confidence():
    h = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    outputs = [(EENET_OUTPUTS[0][0], h)] + EENET_OUTPUTS[1:]
    compute_loss("eenet", outputs, EENET_TARGETS, exit_costs=EENET_COSTS, lam=0.5).backward()
    assert h.grad is not None and torch.all(h.grad != 0)


def test_eenet_needs_one_cost_per_exit():
    with pytest.raises(ValueError, match="one exit cost per exit"):
        compute_loss("eenet", EENET_OUTPUTS, EENET_TARGETS, exit_costs=[0.5, 1.0])


# ----------------------------------------------------------------------------- CE and KD
# One input, target 1, T = 2. z1 = [0, 2 ln 3]: softmax [.1, .9], softmax(z1/T) = [.25, .75].
# z2 = [0, 0]: [.5, .5] both ways. z3 = [0, 2 ln 4]: softmax [1/17, 16/17], at T: [.2, .8].
Z1, Z2, Z3 = [[0.0, 2 * LN3]], [[0.0, 0.0]], [[0.0, 2 * LN4]]
CE1, CE2, CE3 = -math.log(0.9), LN2, -math.log(16 / 17)
P1, P2, P3 = (0.25, 0.75), (0.5, 0.5), (0.2, 0.8)


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def three_exits(requires_grad=False):
    logits = [torch.tensor(z, dtype=torch.float64, requires_grad=requires_grad) for z in (Z1, Z2, Z3)]
    return logits, [(z, torch.ones(1, dtype=torch.float64)) for z in logits]


TARGET = torch.tensor([1])


@pytest.mark.parametrize("weights, expected", [
    ("uniform", CE1 + CE2 + CE3),
    ("increasing", CE1 / 3 + 2 * CE2 / 3 + CE3),
    ([0.5, 0.0, 2.0], 0.5 * CE1 + 2 * CE3),
])
def test_ce_weight_schedules(weights, expected):
    _, outputs = three_exits()
    assert compute_loss("ce", outputs, TARGET, weights=weights).item() == pytest.approx(expected)


def test_ce_weights_must_match_exit_count():
    _, outputs = three_exits()
    with pytest.raises(ConfigError, match="weights has 2 entries but the model has 3 exits"):
        compute_loss("ce", outputs, TARGET, weights=[1.0, 1.0])


def test_kd_one_for_all_from_final_head():
    _, outputs = three_exits()
    outputs = [outputs[0], outputs[2]]  # exit 1 and the final head
    alpha = 0.25
    expected = CE3 + alpha * CE1 + (1 - alpha) * 4 * kl(P3, P1)
    loss = compute_loss("kd", outputs, TARGET, alpha=alpha, temperature=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_kd_uses_given_teacher_and_never_trains_it():
    logits, outputs = three_exits(requires_grad=True)
    teacher = torch.tensor(Z2, dtype=torch.float64, requires_grad=True)  # p_T = [.5, .5]
    loss = compute_loss("kd", [outputs[0], outputs[2]], TARGET, teacher_logits=teacher,
                        alpha=0.5, temperature=2.0)
    assert loss.item() == pytest.approx(CE3 + 0.5 * CE1 + 0.5 * 4 * kl(P2, P1), rel=1e-12)
    loss.backward()
    assert teacher.grad is None
    # the final head only gets its own CE gradient: softmax(z3) - onehot = [1/17, -1/17]
    assert logits[2].grad[0].tolist() == pytest.approx([1 / 17, -1 / 17])


def test_dense_kd_is_hdkd_eq4_sum_of_ce_plus_lam_times_every_pair():
    lam, t = 1.5, 2.0
    logits, outputs = three_exits(requires_grad=True)
    expected = CE1 + CE2 + CE3 + lam * t * t * (kl(P2, P1) + kl(P3, P1) + kl(P3, P2))
    loss = compute_loss("dense_kd", outputs, TARGET, lam=lam, temperature=t)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # exit 2: its CE, softmax(z2) - onehot = [.5, -.5], plus lam T^2 (p2 - p3) / T as the
    # student of exit 3; as exit 1's teacher it is detached
    assert logits[1].grad[0].tolist() == pytest.approx([0.5 + lam * t * 0.3, -0.5 - lam * t * 0.3])
    # the final head: its CE only, [1/17, -1/17]
    assert logits[2].grad[0].tolist() == pytest.approx([1 / 17, -1 / 17])


def test_dense_kd_mean_learns_from_every_later_exit():
    alpha, t = 0.4, 2.0
    logits, outputs = three_exits(requires_grad=True)
    expected = (CE3
                + alpha * CE1 + (1 - alpha) * t * t * (kl(P2, P1) + kl(P3, P1)) / 2
                + alpha * CE2 + (1 - alpha) * t * t * kl(P3, P2))
    loss = compute_loss("dense_kd_mean", outputs, TARGET, alpha=alpha, temperature=t)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # exit 2 is a (detached) teacher of exit 1: its gradient is its own CE and KL terms only,
    # alpha (softmax(z2) - onehot) + (1 - alpha) T^2 (p2 - p3) / T
    expected_grad = [alpha * 0.5 + (1 - alpha) * t * 0.3, -alpha * 0.5 - (1 - alpha) * t * 0.3]
    assert logits[1].grad[0].tolist() == pytest.approx(expected_grad)


# ----------------------------------------------------------------------------- ISC
def test_isc_adds_previous_exit_logits_detached():
    z1, z2, z3 = (torch.randn(2, 3, requires_grad=True) for _ in range(3))
    combined = isc_combine([z1, z2, z3])
    assert torch.equal(combined[1], z1 + z2)
    assert combined[2] is z3  # the final head keeps its own logits by default
    assert torch.allclose(isc_combine([z1, z2, z3], include_final=True)[2], z3 + z2 + z1)
    combined[1].sum().backward()
    assert z1.grad is None
    assert torch.equal(z2.grad, torch.ones(2, 3))


def test_isc_with_the_final_classifier():
    logits, outputs = three_exits(requires_grad=True)
    # the final exit sees z1 + z2 + z3 = [0, 2 ln 3 + 2 ln 4]: softmax [1/145, 144/145]
    loss = compute_loss("ce", outputs, TARGET, weights=[0.0, 0.0, 1.0], isc=True, isc_final=True)
    assert loss.item() == pytest.approx(-math.log(144 / 145))
    loss.backward()
    assert torch.count_nonzero(logits[0].grad) == 0 and torch.count_nonzero(logits[1].grad) == 0
    assert logits[2].grad[0].tolist() == pytest.approx([1 / 145, -1 / 145])
    # without isc_final the final head keeps its own logits: -ln(16/17)
    plain = compute_loss("ce", three_exits()[1], TARGET, weights=[0.0, 0.0, 1.0], isc=True)
    assert plain.item() == pytest.approx(CE3)


def test_isc_loss_gradient_never_reaches_the_earlier_exit():
    logits, outputs = three_exits(requires_grad=True)
    loss = compute_loss("ce", outputs, TARGET, weights=[0.0, 1.0, 0.0], isc=True)
    # exit 2 sees z1 + z2 = [0, 2 ln 3]: CE = -ln .9
    assert loss.item() == pytest.approx(CE1)
    loss.backward()
    assert torch.count_nonzero(logits[0].grad) == 0
    assert torch.count_nonzero(logits[1].grad) == 2


# ----------------------------------------------------------------------------- every loss
@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_finite_and_trains_every_early_exit(name):
    gen = torch.Generator().manual_seed(0)
    early = [(torch.randn(4, 5, generator=gen, requires_grad=True),
              torch.rand(4, generator=gen).requires_grad_()) for _ in range(2)]
    final = (torch.randn(4, 5, generator=gen), torch.ones(4))
    targets = torch.tensor([0, 1, 2, 3])
    loss = compute_loss(name, early + [final], targets, exit_costs=[0.3, 0.6, 1.0])
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for logits, conf in early:
        assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0
        if name == "eenet":
            assert conf.grad is not None and torch.count_nonzero(conf.grad) > 0


def test_nan_loss_stops_the_trial_with_a_reason():
    _, outputs = three_exits()
    bad = [(torch.full((1, 2), float("nan")), torch.ones(1))] + outputs[1:]
    with pytest.raises(TrialFailed, match=r"loss became nan at step 7 \(loss 'ce'"):
        compute_loss("ce", bad, TARGET, step=7)


def test_inf_loss_stops_the_trial():
    with pytest.raises(TrialFailed, match="loss became inf"):
        compute_loss("eenet", EENET_OUTPUTS, EENET_TARGETS, exit_costs=[math.inf, 0.5, 1.0])


# ----------------------------------------------------------------------------- LossSpec
def test_loss_spec_validates_and_computes():
    spec = LossSpec("kd", {"alpha": 0.25, "temperature": 2})
    assert spec.kwargs == {"alpha": 0.25, "temperature": 2.0}
    assert hash(spec) == hash(LossSpec("kd", {"temperature": 2.0, "alpha": 0.25}))
    _, outputs = three_exits()
    outputs = [outputs[0], outputs[2]]
    assert apply_loss(spec, outputs, TARGET).item() == pytest.approx(CE3 + 0.25 * CE1 + 0.75 * 4 * kl(P3, P1))
    assert LossSpec("ce", {"weights": [1, 2]}).kwargs == {"weights": (1.0, 2.0)}


@pytest.mark.parametrize("name, params, message", [
    ("kd", {"beta": 1}, "loss kd: unknown parameter 'beta' for loss 'kd'; expected one of: alpha, temperature"),
    ("kd", {"alpha": 1.5}, r"loss kd.alpha must be in \[0, 1\], got 1.5"),
    ("kd", {"alpha": True}, "loss kd.alpha must be a finite number, got True"),
    ("dense_kd", {"temperature": 0}, r"loss dense_kd.temperature must be in \(0, inf\], got 0"),
    ("eenet", {"version": "v3"}, "loss eenet.version must be 'v1' or 'v2', got 'v3'"),
    ("eenet", {"lam": -1}, "loss eenet.lam must be in"),
    ("ce", {"weights": "decreasing"}, "loss ce.weights must be 'uniform', 'increasing' or a list"),
    ("ce", {"weights": [-1, 2]}, r"loss ce.weights must be >= 0 and not all 0, got \[-1, 2\]"),
])
def test_loss_spec_rejects_bad_params(name, params, message):
    with pytest.raises(ConfigError, match=message):
        LossSpec(name, params)


def test_loss_spec_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown loss 'focal'; expected one of: ce, eenet, kd, dense_kd"):
        LossSpec("focal")


def test_loss_spec_from_yaml_mapping():
    spec = LossSpec.from_mapping({"name": "eenet", "version": "v2", "lam": 0.7, "isc": True})
    assert spec == LossSpec("eenet", {"version": "v2", "lam": 0.7}, isc=True)
    assert LossSpec.from_mapping("dense_kd") == LossSpec("dense_kd")
    where = "search_spaces/x.yaml: loss"
    with pytest.raises(ConfigError, match=f"^{where}.name: unknown loss 'focal'; expected one of"):
        LossSpec.from_mapping({"name": "focal"}, where)
    with pytest.raises(ConfigError, match=f"^{where}.alpha must be in"):
        LossSpec.from_mapping({"name": "kd", "alpha": 2}, where)
    with pytest.raises(ConfigError, match=f"^{where}.isc must be true or false, got 'yes'"):
        LossSpec.from_mapping({"name": "kd", "isc": "yes"}, where)
    with pytest.raises(ConfigError, match=f"^{where} must be a loss name or a mapping"):
        LossSpec.from_mapping(3, where)


def test_every_declared_loss_has_an_implementation_with_the_declared_parameters():
    """dse.design.losses declares names, parameters and defaults; dse.train.losses implements
    them: the two must agree for every loss."""
    import inspect

    assert LOSSES.names() == LOSS_KINDS.names()
    for name in LOSSES.names():
        sig = inspect.signature(LOSSES.get(name))
        own = [(p.name, p.default) for p in sig.parameters.values()
               if p.kind is inspect.Parameter.KEYWORD_ONLY
               and p.name not in ("teacher_logits", "exit_costs")]
        assert tuple(own) == LOSS_KINDS.get(name).defaults, name
