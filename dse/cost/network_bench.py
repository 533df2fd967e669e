"""Whole-network micro-benchmarks for ``dse profile calibrate``: what a network pays beyond its ops.

Two families, both eager PyTorch at batch 1 through ``MultiExitNet.early_exit`` (the path a
deployment runs), each described by the records the latency model sums
(:func:`early_exit_records`):

- composites: small synthetic early-exit CNNs (mini-ResNets, mini-MobileNets, mini-VGGs) built
  from generic modules, not dse's backbones. An op inside a network costs more than the same op
  in a tight loop (``nn.Module`` dispatch, the Python ``forward``, colder caches and branch
  predictors); these fix the per-kernel and per-module-call overheads as a network pays them;
- the real early-exit path on identity blocks (:func:`exit_path_costs`), for the per-exit
  decision and the fixed per-inference cost.

The single-op micro-benchmarks and the timer are :mod:`dse.cost.microbench`'s; the fit is
:mod:`dse.cost.calibrate`'s.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dse.cost.microbench import Bench, measure
from dse.cost.op_trace import LayerRecord, trace_multiexit
from dse.models.backbones import Backbone
from dse.models.criteria import get_criterion
from dse.models.multiexit import MultiExitNet

#: Marker records (kind ``call``, no calls: free in the model) of composite benchmarks.
INFERENCE, DECISION = "inference", "exit_decision"


def exit_path_costs(criterion: str, rounds: int, target_s: float, clock: Callable[[], float],
                    statistic: str = "median", reference: Callable[[], Any] | None = None,
                    reference_s: float | None = None) -> tuple[float, float, float]:
    """(call_us, decision_us, inference_us) timed on the real early-exit path.

    ``MultiExitNet.early_exit`` on identity blocks with branches that return fixed outputs: the
    time per extra (never-taken) exit, less its block and branch module calls, is the decision;
    the rest of a call with no exits (or taking the first) is the fixed per-inference cost.
    """
    logits, conf = torch.randn(1, 10), torch.full((1,), 0.5)

    class Branch(nn.Module):
        def forward(self, x):
            return logits, conf

    class Head(nn.Module):
        def forward(self, x):
            return logits

    k = 8
    nets = [MultiExitNet(Backbone([nn.Identity() for _ in range(n + 1)], Head()), list(range(n)),
                         [Branch() for _ in range(n)]).eval() for n in (0, k, 1)]
    x = torch.randn(1, 4)
    ident = nn.Identity()
    crit = criterion
    never, always = forcing_thresholds(crit, k, k), forcing_thresholds(crit, 1, 0)
    t_call, t0, tk, t_exit = measure([
        lambda: ident(x), lambda: nets[0].early_exit(x, crit, []),
        lambda: nets[1].early_exit(x, crit, never), lambda: nets[2].early_exit(x, crit, always),
    ], rounds=rounds, target_s=target_s, clock=clock, statistic=statistic, reference=reference,
        reference_s=reference_s)
    call = t_call * 1e6
    decision = max((tk - t0) * 1e6 / k - 2 * call, 0.0)
    inference = max(0.5 * ((t0 * 1e6 - 2 * call) + (t_exit * 1e6 - 2 * call - decision)), 0.0)
    return call, decision, inference


def forcing_thresholds(criterion: str, num_exits: int, exit_at: int) -> list[float]:
    """Thresholds making every input leave at early exit ``exit_at`` (== num_exits: the final)."""
    hi_conf = get_criterion(criterion).higher_is_confident
    never, always = (2.0, -1.0) if hi_conf else (-1.0, 2.0)
    return [always if i == exit_at else never for i in range(num_exits)]


def composite_benchmarks(quick: bool, criterion: str = "maxprob") -> list[Bench]:
    """("composite", fn, records) for small synthetic early-exit CNNs (seeded).

    Random mini-ResNets (projection or option-A pad shortcuts: slicing + ``F.pad``),
    mini-MobileNets and mini-VGGs, built from generic modules (not dse's backbones), with 0-3
    exit branches (pooling, two linears, sigmoid) at random blocks, run whole the way a
    deployment runs: ``MultiExitNet.early_exit`` at batch 1, every exit evaluated and none
    taken. Per-op costs then include ``nn.Module`` dispatch, the cache state of a real forward
    (weights and feature maps evicted by the rest of the chain, the dispatcher's code evicted
    by the kernels), the early-exit loop and, on the nets with large feature maps, the
    allocator's fresh pages for big outputs. The records are the path the model sums
    (:func:`early_exit_records`).
    """
    return [("composite", *early_exit_bench(net, shape, criterion))
            for net, shape in composite_nets(quick)]


def composite_nets(quick: bool) -> list[tuple[MultiExitNet, tuple[int, int, int]]]:
    """(net in eval mode, input shape C, H, W) of every composite benchmark (seeded)."""
    rng = random.Random(0)
    torch.manual_seed(0)
    out = []
    for i in range(6 if quick else 48):
        # every third net works on large feature maps: fresh-page costs of big outputs
        net, cin, hw = _random_net(("resnet", "mobile", "vgg")[i % 3], rng, large=(i // 3) % 3 == 2)
        out.append((net, (cin, hw, hw)))
    return out


# --- the generic modules composite benchmarks are built from (not dse's backbones) ----------

def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1,
         act: str = "relu") -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True) if act == "relu6" else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Pad(nn.Module):
    """Option-A shortcut: subsample and zero-pad channels (slicing + ``F.pad``)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, functional: bool, pad: bool) -> None:
        super().__init__()
        self.a, self.b = _cbr(cin, cout, 3, stride), _cbr(cout, cout, act="")
        self.sc = (nn.Identity() if stride == 1 and cin == cout
                   else _Pad(cin, cout, stride) if pad else _cbr(cin, cout, 1, stride, act=""))
        self.relu, self.functional = nn.ReLU(inplace=True), functional

    def forward(self, x):
        out = self.b(self.a(x)) + self.sc(x)
        return F.relu(out) if self.functional else self.relu(out)


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        self.conv = nn.Sequential(_cbr(cin, hidden, 1, act="relu6"),
                                  _cbr(hidden, hidden, 3, stride, groups=hidden, act="relu6"),
                                  _cbr(hidden, cout, 1, act=""))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class _Branch(nn.Module):
    def __init__(self, c: int, bn: bool, classes: int) -> None:
        super().__init__()
        pre = [nn.BatchNorm2d(c), nn.ReLU()] if bn else []
        self.features = nn.Sequential(*pre, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc, self.conf = nn.Linear(c, classes), nn.Linear(c, 1)

    def forward(self, x):
        z = self.features(x)
        return self.fc(z), torch.sigmoid(self.conf(z)).squeeze(1)


class _Head(nn.Module):
    def __init__(self, c: int, classes: int) -> None:
        super().__init__()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


def _random_net(family: str, rng: random.Random, large: bool) -> tuple[MultiExitNet, int, int]:
    """(net in eval mode, input channels, input size): a random ``family`` net with 0-3 exits."""
    cin, hw = rng.choice([(3, 64), (3, 96), (3, 128)] if large else [(1, 8), (3, 16), (3, 32)])
    c = rng.choice([8, 16] if large else [8, 16, 32, 64])
    deep = not large and family == "resnet" and rng.random() < 0.5  # long chains, many weights
    body, c = _random_body(family, rng, cin, c, deep)
    shapes, z = [], torch.zeros(1, cin, hw, hw)
    with torch.no_grad():
        for m in body:
            z = m.eval()(z)
            shapes.append(z.shape[1])
    n_exits = min(rng.choice([0, 1, 2, 3]), len(body) - 1)
    exits = sorted(rng.sample(range(len(body) - 1), n_exits))
    classes = rng.choice([10, 100])
    branches = [_Branch(shapes[b], rng.random() < 0.5, classes) for b in exits]
    net = MultiExitNet(Backbone(body, _Head(c, classes)), exits, branches)
    return net.eval(), cin, hw


def _random_body(family: str, rng: random.Random, cin: int, c: int,
                 deep: bool) -> tuple[list[nn.Module], int]:
    """(blocks, output channels): a stem, then 2-3 stages of ``family`` blocks."""
    body: list[nn.Module] = [_cbr(cin, c)]
    pad = rng.random() < 0.5
    for stage in range(rng.choice([2, 3])):
        cout = c * 2 if stage else c
        for i in range(rng.choice([3, 5, 7] if deep else [1, 2, 3])):
            stride = 2 if stage and i == 0 else 1
            if family == "resnet":
                body.append(_Residual(c, cout, stride, rng.random() < 0.5, pad))
            elif family == "mobile":
                body.append(_Inverted(c, cout, stride, rng.choice([2, 4, 6])))
            else:
                body.append(_cbr(c, cout))
            c = cout
        if family == "vgg":
            body.append(nn.MaxPool2d(2, 2))
    return body, c


def early_exit_bench(net: Any, input_shape: Sequence[int], criterion: str) -> tuple[Callable[[], Any], list[LayerRecord]]:
    """(fn, records) timing ``net.early_exit`` through every exit to the final one (batch 1)."""
    x = torch.randn(1, *input_shape)
    ths = forcing_thresholds(criterion, len(net.exit_blocks), len(net.exit_blocks))
    return (lambda: net.early_exit(x, criterion, ths)), early_exit_records(net, input_shape)


def early_exit_records(net: Any, input_shape: Sequence[int]) -> list[LayerRecord]:
    """The records of ``net``'s path through every exit to the final one, as the model sums
    them (:func:`dse.cost.latency.predict`): an ``inference`` marker, then blocks, each branch
    followed by an ``exit_decision`` marker, then the head (markers are ``call`` records with
    no calls: free in the model, counted by the fit)."""
    exits = list(net.exit_blocks)
    r = trace_multiexit(net.backbone, input_shape, exits, list(net.branches))
    records = [LayerRecord(name=INFERENCE, kind="call")]
    start = 0
    for n, b in enumerate(exits):
        records += [rec for block in r.blocks[start:b + 1] for rec in block]
        records += [*r.branches[n], LayerRecord(name=DECISION, kind="call")]
        start = b + 1
    records += [rec for block in r.blocks[start:] for rec in block] + list(r.head)
    return records
