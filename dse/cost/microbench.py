"""Micro-benchmarks for ``dse profile calibrate`` and the timer ``validate`` shares.

Three families, all eager PyTorch at batch 1, each described by the records the latency model
sees (:func:`dse.cost.op_trace.trace_call` / :func:`~dse.cost.op_trace.trace`):

- single ops over a grid of shapes drawn from CIFAR/ImageNet ResNets, VGG and MobileNetV2
  (conv, depthwise conv, linear, batch norm, element-wise, pooling, reductions, views), called
  functionally in a tight loop: they fix each kind's throughput (compute and memory efficiency,
  GEMM half-saturation sizes);
- composites: small module-built stacks (conv-BN-ReLU, residual blocks, inverted residuals,
  pooling heads, exit-branch-like heads) at small shapes, where framework overhead dominates. An
  op inside a network costs more than the same op in a tight loop (``nn.Module`` dispatch, the
  Python ``forward``, colder caches and branch predictors); these fix the per-kernel and
  per-module-call overheads as a network pays them;
- the real ``MultiExitNet.early_exit`` on identity blocks, for the per-exit decision and the fixed
  per-inference cost.

Timing (:func:`measure`) is the shared harness (:mod:`dse.cost.harness`): every benchmark is
sampled in interleaved (round-robin) rounds and a robust statistic kept, so a burst of load on a
shared machine hits one round of every benchmark rather than all rounds of a few. The single ops
are also given as ``(op, input)`` pairs (:func:`op_specs`), so the ONNX Runtime calibration
(:mod:`dse.export.ort_calibrate`) exports and times exactly the same ops.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dse.cost.harness import DEFAULT_REFERENCE, REFERENCES, time_groups
from dse.cost.op_trace import LayerRecord, is_strided_im2col, trace_call, trace_multiexit
from dse.errors import UnknownNameError
from dse.models.backbones import Backbone
from dse.models.criteria import get_criterion
from dse.models.multiexit import MultiExitNet

Bench = tuple[str, Callable[[], Any], list[LayerRecord]]


def timer(clock: str = "auto", threads: int | None = None) -> Callable[[], float]:
    """The clock timings use: ``wall`` (perf_counter) or ``cpu`` (this thread's CPU time).

    ``auto`` picks ``cpu`` for single-threaded runs: on a quiet machine a busy single thread's
    CPU time is its wall time, and on a shared one it leaves out the slices other processes
    took. Multi-threaded runs need the wall clock.
    """
    if clock not in ("auto", "wall", "cpu"):
        raise ValueError(f"clock must be auto, wall or cpu, got {clock!r}")
    if clock == "cpu" or (clock == "auto" and threads == 1):
        return time.thread_time
    return time.perf_counter


def clock_name(clock: Callable[[], float]) -> str:
    """``wall`` for the wall clock, ``cpu`` for a CPU-time clock (:func:`timer`): what a
    report says its times are."""
    return "wall" if clock is time.perf_counter else "cpu"


def measure(fns: Sequence[Callable[[], Any]], rounds: int, target_s: float, warmup: int = 2,
            clock: Callable[[], float] = time.perf_counter, statistic: str = "median",
            passes: int = 1, reference: Callable[[], Any] | None = None,
            reference_s: float | None = None) -> list[float]:
    """Seconds per call of each function (``statistic`` of its samples), sampled round robin
    by the shared harness (:func:`dse.cost.harness.time_groups`, one group; with a
    ``reference``, in reference units converted back at ``reference_s``)."""
    return time_groups([fns], rounds=rounds, passes=passes, target_s=target_s, clock=clock,
                       statistic=statistic, warmup=warmup, reference=reference,
                       reference_s=reference_s).seconds()


def reference_op(name: str = DEFAULT_REFERENCE
                 ) -> tuple[Callable[[torch.Tensor], Any], torch.Tensor]:
    """(op, input) of the reference the harness brackets every sample with
    (:mod:`dse.cost.harness`): a seeded 3x3 convolution at batch 1 of the size ``name`` gives
    (:data:`dse.cost.harness.REFERENCES`; the default, 32 channels at 16x16, takes 0.07-0.19 ms
    on one core of the 2.8 GHz Xeon VM, by its state), compute-bound, so it slows down with the
    core's share of the machine. The ONNX Runtime paths run the same op exported, so the
    reference goes through the same library as what it measures."""
    if name not in REFERENCES:
        raise UnknownNameError(f"unknown timing reference {name!r}; known: {', '.join(REFERENCES)}")
    channels, side = REFERENCES[name]
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(channels, channels, 3, 3, generator=gen)
    x = torch.randn(1, channels, side, side, generator=gen)
    return (lambda z: F.conv2d(z, w, None, 1, 1)), x


def reference_kernel(name: str = DEFAULT_REFERENCE) -> Callable[[], Any]:
    """The reference op in eager PyTorch (:func:`reference_op`)."""
    op, x = reference_op(name)
    return lambda: op(x)


def reference_seconds(reference: Callable[[], Any], clock: Callable[[], float],
                      statistic: str = "median") -> float:
    """Seconds per call of the reference now (51 samples of about 0.5 ms): the fixed speed a
    calibration converts its reference units back at, recorded as the runtime's
    ``reference_us`` so that validation converts at the same one."""
    return measure([reference], rounds=51, target_s=5e-4, clock=clock, statistic=statistic)[0]


# --- micro-benchmarks ----------------------------------------------------------------------

# (cin, cout, hw, kernel, stride): CIFAR ResNets / VGG-11 / ImageNet ResNets / MobileNetV2 1x1s.
_CONVS = [
    (1, 16, 8, 3, 1), (16, 16, 8, 3, 1), (16, 32, 8, 3, 2), (32, 32, 4, 3, 1), (32, 64, 4, 3, 2),
    (64, 64, 2, 3, 1), (3, 16, 32, 3, 1), (16, 16, 32, 3, 1), (16, 32, 32, 3, 2), (32, 32, 16, 3, 1),
    (32, 64, 16, 3, 2), (64, 64, 8, 3, 1), (16, 32, 32, 1, 2), (3, 128, 32, 3, 1),
    (128, 128, 32, 3, 1), (128, 256, 16, 3, 1), (256, 256, 16, 3, 1), (256, 512, 8, 3, 1),
    (512, 512, 8, 3, 1), (3, 64, 224, 7, 2), (64, 64, 56, 3, 1), (64, 64, 56, 1, 1),
    (64, 256, 56, 1, 1), (256, 64, 56, 1, 1), (128, 128, 28, 3, 1), (256, 512, 56, 1, 2),
    (512, 128, 28, 1, 1), (256, 256, 14, 3, 1), (1024, 256, 14, 1, 1), (256, 1024, 14, 1, 1),
    (512, 512, 7, 3, 1), (512, 2048, 7, 1, 1), (2048, 512, 7, 1, 1), (3, 32, 224, 3, 2),
    (16, 96, 112, 1, 1), (96, 24, 56, 1, 1), (144, 24, 56, 1, 1), (32, 192, 28, 1, 1),
    (384, 64, 14, 1, 1), (960, 160, 7, 1, 1), (320, 1280, 7, 1, 1), (3, 32, 32, 3, 2),
    (96, 24, 8, 1, 1), (192, 64, 2, 1, 1), (320, 1280, 1, 1, 1), (64, 64, 16, 3, 1),
    (8, 16, 32, 3, 1), (16, 16, 16, 3, 1), (32, 32, 8, 3, 1), (128, 128, 4, 3, 1),
    (256, 256, 2, 3, 1), (8, 8, 16, 3, 1), (16, 64, 16, 1, 1), (64, 16, 16, 1, 1),
]
_DWCONVS = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 2),
            (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1), (32, 16, 1), (96, 16, 2),
            (144, 8, 1), (192, 4, 2), (384, 2, 1), (960, 1, 1)]
_LINEARS = [(16, 1), (16, 10), (64, 10), (128, 10), (256, 100), (512, 10), (512, 1000),
            (1024, 10), (2048, 1000), (1280, 1000), (4096, 1024), (8192, 1024), (2048, 4096)]
# (channels, hw) for norm / element-wise / pooling benchmarks.
_MAPS = [(16, 8), (64, 2), (16, 32), (32, 16), (64, 8), (128, 32), (64, 56), (256, 14),
         (256, 56), (512, 7), (96, 112), (1024, 14), (2048, 7)]


def _quick(items: list, keep: int) -> list:
    step = max(1, len(items) // keep)
    return items[::step]


#: (kind, op, input, records): ``op(input)`` is the benchmark; records are what the model sees.
OpSpec = tuple[str, Callable[[torch.Tensor], Any], torch.Tensor, list[LayerRecord]]


def _conv_group(r: LayerRecord) -> str:
    """The fit group of a convolution benchmark: ``conv`` (the tuned library), ``conv_gemm``
    (im2col + GEMM) or ``conv_gemm_strided`` (strided im2col; see ``op_trace.FALLBACK_KINDS``)."""
    if is_strided_im2col(r):
        return "conv_gemm_strided"
    return r.kind


def op_benchmarks(quick: bool) -> list[Bench]:
    """(kind, fn, records) for every single-op micro-benchmark (functional calls)."""
    return [(kind, (lambda f=f, x=x: f(x)), records) for kind, f, x, records in op_specs(quick)]


def op_specs(quick: bool) -> list[OpSpec]:
    """(kind, op, input, records) of every single-op micro-benchmark (seeded)."""
    gen = torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    out: list[OpSpec] = []

    def add(kind: str, f: Callable[[torch.Tensor], Any], x: torch.Tensor,
            weights: Sequence[Any] = ()) -> None:
        records = trace_call(lambda: f(x), weights)
        out.append((_conv_group(records[0]) if kind == "conv" else kind, f, x, records))

    convs, dws, lins, maps = _CONVS, _DWCONVS, _LINEARS, _MAPS
    if quick:
        convs, dws, lins, maps = (_quick(convs, 8), _quick(dws, 3), _quick(lins, 3), _quick(maps, 3))
    for cin, cout, hw, k, s in convs:
        w = rnd(cout, cin, k, k)
        add("conv", lambda x, w=w, s=s, k=k: F.conv2d(x, w, None, s, k // 2), rnd(1, cin, hw, hw), [w])
    for c, hw, s in dws:
        w = rnd(c, 1, 3, 3)
        add("dwconv", lambda x, w=w, s=s, c=c: F.conv2d(x, w, None, s, 1, 1, c), rnd(1, c, hw, hw), [w])
    for cin, cout in lins:
        w, b = rnd(cout, cin), rnd(cout)
        add("linear", lambda x, w=w, b=b: F.linear(x, w, b), rnd(1, cin), [w, b])
    for c, hw in maps:
        x, y = rnd(1, c, hw, hw), rnd(1, c, hw, hw)
        stats = [rnd(c).abs() + 0.5 for _ in range(4)]
        add("norm", lambda x, m=stats: F.batch_norm(x, m[0], m[1], m[2], m[3], False, 0.1, 1e-5),
            x, stats)
        add("elementwise", lambda x: F.relu(x, inplace=True), x)
        add("elementwise", lambda x, y=y: x + y, x)
        if not quick:
            add("elementwise", lambda x: F.relu(x), x)
            add("elementwise", lambda x: F.hardtanh(x, 0.0, 6.0, inplace=True), x)
            add("pad", lambda x, c=c: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, c // 2, c // 2)), x)
        add("reduce", lambda x: F.adaptive_avg_pool2d(x, 1), x)
        if hw >= 4:
            add("pool", lambda x: F.max_pool2d(x, 3, 2, 1), x)
            add("pool", lambda x: F.max_pool2d(x, 2, 2), x)
    v = rnd(1, 64, 1, 1)
    for f in (lambda x: torch.flatten(x, 1), lambda x: x.view(1, -1), lambda x: x.squeeze(3)):
        add("view", f, v)
    return out


def peak_gflops(rounds: int, quick: bool, clock: Callable[[], float],
                reference: Callable[[], Any] | None = None,
                reference_s: float | None = None) -> float:
    """Best square matrix-multiply throughput (GFLOP/s, 2 per multiply-add) at two sizes."""
    best = 0.0
    for n in ((256, 512) if quick else (512, 1024)):
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = measure([lambda a=a, b=b: torch.mm(a, b)], rounds=max(3, rounds // 2), target_s=0.02,
                    clock=clock, reference=reference, reference_s=reference_s)[0]
        best = max(best, 2 * n ** 3 / t / 1e9)
    return best


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


#: Marker records (kind ``call``, no calls: free in the model) of composite benchmarks.
INFERENCE, DECISION = "inference", "exit_decision"
