from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dse.cost.flops import branch_macs, exit_cum_macs
from dse.errors import ConfigError
from dse.models.backbones import build_backbone
from dse.models.criteria import CRITERIA
from dse.models.exits import BRANCHES, build_branch
from dse.models.multiexit import MultiExitNet, build_multiexit

BRANCH_CASES = [("plain", {}), ("pool", {}), ("bnpool", {}), ("convx", {"depth": 2, "width": 8}),
                ("msdnet", {"width": 8})]


@pytest.mark.parametrize("name, params", BRANCH_CASES)
def test_branch_returns_logits_and_confidence_in_unit_interval(name, params):
    branch = build_branch(name, (6, 5, 5), 4, **params)
    logits, conf = branch(torch.randn(3, 6, 5, 5) * 10)
    assert logits.shape == (3, 4) and conf.shape == (3,)
    assert ((conf >= 0) & (conf <= 1)).all()


def test_every_registered_branch_is_covered():
    assert sorted(n for n, _ in BRANCH_CASES) == sorted(BRANCHES.names())


def test_branch_macs_by_hand():
    # pool: GAP reads 6*5*5 = 150 elements (1 MAC each) + two FCs 6*4 + 6*1.
    assert branch_macs(build_branch("pool", (6, 5, 5), 4), (6, 5, 5)) == 150 + 24 + 6
    # plain: FCs on 150 inputs.
    assert branch_macs(build_branch("plain", (6, 5, 5), 4), (6, 5, 5)) == 150 * 5
    # convx depth 1 width 8: conv 5*5*8*6*9 + GAP 8*25 + FCs 8*5.
    assert branch_macs(build_branch("convx", (6, 5, 5), 4, depth=1, width=8), (6, 5, 5)) == \
        5 * 5 * 8 * 6 * 9 + 200 + 40


def test_exit_cum_macs_includes_earlier_branches():
    assert exit_cum_macs([10, 20, 30, 40], 5, [0, 2], [1, 2]) == [11, 63, 108]
    assert exit_cum_macs([10, 20], 5, [], []) == [35]


@pytest.mark.parametrize("name, params", [("convx", {"width": 0}), ("pool", {"depth": 2})])
def test_bad_branch_params(name, params):
    with pytest.raises(ConfigError):
        build_branch(name, (6, 5, 5), 4, **params)


def _net(branch, params, seed=0):
    torch.manual_seed(seed)
    backbone = build_backbone("resnet8", num_classes=5)
    net = build_multiexit(backbone, [0, 1, 2], branch, 5, (3, 16, 16), **params).eval()
    with torch.no_grad():  # random BN statistics so exits disagree
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2)
    return net


def _select_after_all(outputs, criterion, thresholds):
    crit = CRITERIA.get(criterion)
    n = outputs[0][0].shape[0]
    chosen = torch.full((n,), len(outputs) - 1)
    for e in reversed(range(len(outputs) - 1)):
        logits, conf = outputs[e]
        fire = crit.exits_torch(crit.score_torch(logits, conf), thresholds[e])
        chosen[fire] = e
    logits = torch.stack([o[0] for o in outputs])[chosen, torch.arange(n)]
    return logits, chosen


@pytest.mark.parametrize("case, criterion", list(itertools.product(BRANCH_CASES, CRITERIA.names())))
def test_early_exit_equals_all_exits_then_select(case, criterion):
    name, params = case
    net = _net(name, params)
    x = torch.randn(64, 3, 16, 16)
    with torch.no_grad():
        outputs = net(x)
    crit = CRITERIA.get(criterion)
    # thresholds at the per-exit score median: about half the samples leave at each exit
    ts = [float(crit.score_torch(lg, cf).median()) for lg, cf in outputs[:-1]]
    logits, index = net.early_exit(x, criterion, ts)
    ref_logits, ref_index = _select_after_all(outputs, criterion, ts)
    assert torch.equal(index, ref_index)
    assert len(set(index.tolist())) > 2  # several exits really used
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    assert torch.equal(logits.argmax(1), ref_logits.argmax(1))
    for i in range(4):  # batch 1, the deployment path
        l1, e1 = net.early_exit(x[i:i + 1], criterion, ts)
        assert int(e1) == int(ref_index[i]) and torch.allclose(l1[0], ref_logits[i], atol=1e-5)


@pytest.mark.parametrize("isc_final", [False, True])
def test_early_exit_with_isc_equals_combined_outputs_then_select(isc_final):
    from dse.train.losses import isc_combine

    net = _net("pool", {})
    net.isc, net.isc_final = True, isc_final
    x = torch.randn(64, 3, 16, 16)
    with torch.no_grad():
        raw = net(x)
    combined = isc_combine([lg for lg, _ in raw], include_final=isc_final)
    outputs = [(lg, cf) for lg, (_, cf) in zip(combined, raw)]
    crit = CRITERIA.get("maxprob")
    ts = [float(crit.score_torch(lg, cf).median()) for lg, cf in outputs[:-1]]
    logits, index = net.early_exit(x, "maxprob", ts)
    ref_logits, ref_index = _select_after_all(outputs, "maxprob", ts)
    assert torch.equal(index, ref_index) and torch.allclose(logits, ref_logits, atol=1e-5)
    net.isc = False
    _, plain_index = net.early_exit(x, "maxprob", ts)
    assert not torch.equal(plain_index, index)  # ISC really changes the decisions


def test_early_exit_really_skips_work_for_exited_samples():
    net = _net("pool", {})
    calls = []
    net.backbone.blocks[3].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    net.early_exit(torch.randn(8, 3, 16, 16), "maxprob", 0.0)  # everyone leaves at exit 1
    assert calls == []
    net.early_exit(torch.randn(8, 3, 16, 16), "maxprob", 1.1)  # nobody leaves
    assert calls == [8]


def test_numpy_and_torch_scores_agree():
    logits = torch.randn(50, 7) * 3
    conf = torch.rand(50)
    for name in CRITERIA.names():
        crit = CRITERIA.get(name)
        np.testing.assert_allclose(crit.score_np(logits.numpy(), conf.numpy()),
                                   crit.score_torch(logits, conf).numpy(), rtol=1e-5, atol=1e-6)


def test_multiexit_validation():
    backbone = build_backbone("resnet8", num_classes=5)
    with pytest.raises(ConfigError, match="strictly increasing"):
        MultiExitNet(backbone, [2, 1], [torch.nn.Identity(), torch.nn.Identity()])
    with pytest.raises(ConfigError, match="must lie in 0..2"):
        MultiExitNet(backbone, [3], [torch.nn.Identity()])
    net = _net("pool", {})
    with pytest.raises(ConfigError, match="3 early exits need 1 or 3 thresholds .one per early exit., got 2"):
        net.early_exit(torch.randn(1, 3, 16, 16), "maxprob", [0.5, 0.5])


def test_learned_isc_transform_is_imtas_concat_then_linear_and_the_early_exit_path_agrees():
    from dse.models.multiexit import IscTransform

    torch.manual_seed(0)
    net = _net("pool", {})
    net.isc_final = True
    net.add_isc_transforms(5)
    assert net.isc and len(net.isc_transforms) == net.num_exits - 1
    # IMTA: classifier(cat(features, LinBNReLU(prev))) == own logits + out(LinBNReLU(prev))
    t = IscTransform(10, 6).eval()
    feats, prev = torch.randn(4, 5), torch.randn(4, 10)
    cls = torch.nn.Linear(11, 10)
    with torch.no_grad():
        cls.weight[:, 5:] = t.out.weight  # the concatenated part's weights are t.out's
        own = torch.nn.functional.linear(feats, cls.weight[:, :5], cls.bias)
        joint = cls(torch.cat([feats, t.embed(prev)], 1))
    assert torch.allclose(joint, own + t(prev), atol=1e-6)
    # the early-exit path applies the same transforms
    net.eval()
    x = torch.randn(64, 3, 16, 16)
    with torch.no_grad():
        raw = net(x)
        combined = net.collaborate([lg for lg, _ in raw])
    outputs = [(lg, cf) for lg, (_, cf) in zip(combined, raw)]
    crit = CRITERIA.get("maxprob")
    ts = [float(crit.score_torch(lg, cf).median()) for lg, cf in outputs[:-1]]
    logits, index = net.early_exit(x, "maxprob", ts)
    ref_logits, ref_index = _select_after_all(outputs, "maxprob", ts)
    assert torch.equal(index, ref_index) and torch.allclose(logits, ref_logits, atol=1e-5)
    # unlike the parameter-free form, the gradient reaches the previous classifier (as IMTA's)
    net.train()
    z = [lg.detach().requires_grad_(True) for lg, _ in net(x[:8])]
    net.collaborate(z)[-1].sum().backward()
    assert z[0].grad is not None and torch.count_nonzero(z[0].grad) > 0


@pytest.mark.parametrize("name, params, layers", [
    # EENets (Demir 2019) exit blocks: plain = FC heads on the flattened map; pool = global
    # average pool then the FC heads; bnpool = BN, ReLU, global average pool, FC heads
    ("plain", {}, ["Flatten"]),
    ("pool", {}, ["AdaptiveAvgPool2d", "Flatten"]),
    ("bnpool", {}, ["BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten"]),
    # PTEEnet (Lahiany et al. 2022) ConvX: X x (conv3x3, BN, ReLU), then pool and the FC heads
    ("convx", {"depth": 2, "width": 8},
     ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d",
      "Flatten"]),
    # MSDNet (Huang et al. 2018): two conv3x3 stride 2 (BN, ReLU), average pool, FC
    ("msdnet", {"width": 8},
     ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d",
      "Flatten"]),
])
def test_branch_layer_structure_matches_the_papers(name, params, layers):
    br = build_branch(name, (6, 5, 5), 4, **params)
    got = [type(m).__name__ for m in br.features.modules()
           if not isinstance(m, torch.nn.Sequential)]
    assert got == layers
    convs = [m for m in br.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    # two FC heads: K class logits and one sigmoid confidence in [0, 1]
    assert br.classifier.out_features == 4 and br.confidence.out_features == 1
    logits, conf = br(torch.randn(3, 6, 5, 5))
    assert logits.shape == (3, 4) and conf.shape == (3,) and bool(((conf >= 0) & (conf <= 1)).all())
