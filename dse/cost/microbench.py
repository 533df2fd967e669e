"""Single-op micro-benchmarks for ``dse profile calibrate``, and the timer ``validate`` shares.

Single ops over a grid of shapes drawn from CIFAR/ImageNet ResNets, VGG and MobileNetV2 (conv,
depthwise conv, linear, batch norm, element-wise, pooling, reductions, views), eager PyTorch at
batch 1, called functionally in a tight loop, each described by the records the latency model
sees (:func:`dse.cost.op_trace.trace_call`): they fix each kind's throughput (compute and
memory efficiency, GEMM half-saturation sizes). What a network pays beyond its ops (module
calls, colder caches, the early-exit path) is timed by :mod:`dse.cost.network_bench`.

Timing (:func:`measure`) is the shared harness (:mod:`dse.cost.harness`): every benchmark is
sampled in interleaved (round-robin) rounds and a robust statistic kept, so a burst of load on a
shared machine hits one round of every benchmark rather than all rounds of a few. The single ops
are also given as ``(op, input)`` pairs (:func:`op_specs`), so the ONNX Runtime calibration
(:mod:`dse.export.ort_calibrate`) exports and times exactly the same ops.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from dse.cost.harness import DEFAULT_REFERENCE, REFERENCES, time_groups
from dse.cost.op_kinds import is_strided_im2col
from dse.cost.op_trace import LayerRecord, trace_call
from dse.errors import UnknownNameError

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
    (im2col + GEMM) or ``conv_gemm_strided`` (strided im2col; see ``op_kinds.FALLBACK_KINDS``)."""
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
