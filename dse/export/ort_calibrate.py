"""``dse profile calibrate --runtime onnxruntime``: fit a profile runtime to ONNX Runtime here.

The same micro-benchmarks as the PyTorch calibration (:mod:`dse.cost.microbench`), exported to
ONNX in a temporary folder and timed through ONNX Runtime at batch 1 with pinned intra-op
threads, by the shared harness (:mod:`dse.cost.harness`: round robin, robust statistic); the fit
is the PyTorch one (:func:`dse.cost.calibrate.fit_profile`), so the two runtimes are fitted
alike. What differs is what ONNX Runtime runs:

- **fusion**: its graph optimiser folds batch norms into convolutions and fuses activations and
  residual adds into them, so the fitted runtime sets ``fusion: true`` (the model then joins a
  norm / element-wise op to the kernel before it, :func:`dse.cost.latency.kernels`);
- **no module calls**: a graph has no ``nn.Module`` dispatch, so ``call_overhead_us`` is 0;
- **graph runs**: an exported early-exit network is one graph per backbone segment and one per
  exit head (:mod:`dse.export.graphs`), and each ``session.run`` costs a fixed
  ``graph_run_overhead_us``, measured on a one-node graph;
- **ops as a network runs them**: a one-op graph also pays what ONNX Runtime does at a graph's
  edges (layout reorders around blocked-layout convolutions, the output's copy to numpy), once
  per graph in a network, not per op. Stage 1 is fitted to the difference of a two-op chain
  and the one-op graph where the op keeps its shape (:func:`in_network_seconds`), else to the
  one-op graph less ``graph_run_overhead_us``, except for the downsampling ops
  (:func:`downsamples`: pools, global reductions, strided dense convolutions), fitted to their
  one-op graph's time times the share of it ONNX Runtime's profiler gives their own kernels
  (:func:`dse.export.ort_bench.profile_graph`). Why: in a network such an op reads the blocked
  layout the convolution before it wrote, but its one-op graph reorders an input up to 4x its
  output (the profiler on this host: a 256-channel 56x56 max pool ran 683 us a graph, 219 us
  in its kernel, 373 us reordering its input; a 256->512-channel 1x1 stride-2 convolution
  1965 us, 1548 us in its kernel, 327 us reordering; ResNet-18 at 224 px run as one graph has
  no reorder but the final one). Our choice, from two calibrations' measurements scored on
  their own validations (59 exits each, load 0.6-1.0): within +-10 % 78 -> 90 % and
  73 -> 90 %, MAPE 6.1 -> 5.0 % and 7.2 -> 5.6 %. Depthwise convolutions keep the edges: with
  strided ones included MobileNetV2 came out 8-11 % too fast (in a network its 112- and 56-px
  depthwise convolutions take about twice their chained time; the profiler: 455 us in the
  network against 215 us predicted), and so do stride-1 channel-changing convolutions
  (profiled shares for every unchainable op: 20-51 % within +-10 %, MobileNetV2 28-32 % too
  fast);
- **layout reorders**: the same profiles time the reorder nodes of those one-op graphs (the
  copies between ONNX Runtime's blocked convolution layout and the plain one), and
  :func:`fit_reorders` fits a cost per reorder and per 1000 elements to them (on this host
  2.1 us + 0.28 us per 1000 elements); the runtime then sets ``blocked_layout`` and the model
  prices each graph's reorders and the residual adds they keep unfused
  (:mod:`dse.cost.layout`). A provider that shows no reorder (CUDA, or CPU without NCHWc
  kernels) keeps ``blocked_layout`` off. The layout's channel block (``layout_block``: dense
  convolutions with fewer input channels read plain input) is observed too
  (:func:`dse.export.ort_bench.layout_block`: 16 on this AVX-512 host, 8 with AVX2). On one
  calibration (load 0.4-0.8) scored on its own validation, the same measurements priced
  without and with it: within +-10 % 73 -> 90 %, MAPE 6.3 -> 4.8 %, the CIFAR ResNets' median
  error (resnet8 / 20 / 56) -8 / -10 / -8 % -> -4 / -4 / -5 %;
- **decision and entry**: the bundle runner's early-exit loop (:class:`dse.export.runner.Bundle`)
  on identity segments with never-taken exits: the time per extra exit, less its two graph
  runs, is the decision (the criterion in numpy); a network with no early exit, less its two
  graph runs, is the per-inference cost;
- **no stage 2**: the PyTorch calibration fits in-network extras (per kernel, per MB of fresh
  outputs, per decision) to synthetic early-exit networks run whole (``composites``); here the
  ops are already timed inside a graph, so those networks are not timed and the fit stops after
  stage 1. Our choice, from three calibrations on this host fitted both ways and scored on the
  same validation measurements (59 exits each, load 0.9-2.6): with stage 2 (cut bundles of the
  synthetic networks run through every exit), 36-61 % of exits within +-10 %, MAPE 11-25 %,
  90th-percentile error 26-68 %, worst exit 31-97 %; without it, 64-69 %, MAPE 7.4-9.5 %,
  90th percentile 12-23 %, worst 15-26 %. Its per-MB term (446-1195 us per MB of fresh
  output, a page-fault cost ONNX Runtime's arena allocator does not pay) made the 224-px
  exits too slow (median +8 to +29 % per backbone), and its per-decision extra (+11 to +69 us)
  the 8-px digits exits (median +26 to +93 %); stage 2 without those two terms still left a
  worst exit of 23-73 %;
- **reference**: the harness's reference convolution (:func:`dse.cost.microbench.reference_op`)
  runs exported, through ONNX Runtime, so it goes through the library it normalises.

Measured on a 2-core shared host (2026-11-30), four runs of the same code
(``benchmarks/latency_model.py``, one thread, median): at a load average of 5, 73 % of 59 exits
within +-10 %, MAPE 8.2 %, Spearman 0.997, repeatability 0.64; under loads of 8-18, 61 %, and
twice every exit 1.2-2.5x too slow (0 % and 2 % within +-10 %, Spearman 0.994-0.995) with
repeatability 0.17-0.53 (in the worst run the second half of every exit's samples took 10-50 %
more CPU time than the first): the measurements, not only the model, moved; the targets are for
a machine at rest.
Why the chains: with one-op graphs, stage 1 charged every op its graph's edges (ONNX Runtime's
profiler, on this host: a 32-channel 16x16 3x3 convolution ran 42 us in its kernel and 10 us in
reorders, 67 us per run; a 32-channel 112x112 depthwise convolution cost 590 us as a one-op
graph and 165 us more per extra op in a chain), and the model predicted 56 of 59 validation
exits too slow (median +18 %, mobile nets at 224 px +38 %). With the chains, on one calibration
measurement fitted both ways and validated once (``benchmarks/latency_model.py`` code, load
average 3.9-4.1): within +-10 % 37 % -> 61 %, MAPE 19.3 % -> 14.8 %, median error +16 % ->
+6.5 %, Spearman 0.996 both; at load 4.3-5: MAPE 48.7 % -> 37.9 %, median +44 % -> +29 %. Two
full runs interleaved (old code, then this; loads 3.0-5.0): within 20 % -> 37 %, MAPE 27.8 %
-> 18.8 %, median +23 % -> +12 % (PyTorch, unchanged, -6 % -> +38 %: the machine moved).
Those runs still fitted stage 2, whose per-decision and per-MB extras left digits-resnet
(+28-52 %) and resnet18 at 224 px (+23-38 %) too slow; hence "no stage 2" above. Fitting stage 1 to the profiler's
kernel times instead was tried and dropped: the profiler times wall clock, which a loaded
machine inflates.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from dse.cost import microbench as mb
from dse.cost.calibrate import fit_profile
from dse.cost.calibrate_measure import (CalibrationSettings, Measurements, at_run_reference,
                                        co_timed_share)
from dse.cost.harness import Timing, time_groups
from dse.cost.profiles import Profile
from dse.device import available_cpus, set_threads
from dse.export.ort_bench import (DEFAULT_PROVIDER, chain_runner, check_provider, exit_calls,
                                  layout_block, op_runner, profile_graph, runtime_name,
                                  write_cut_bundle)
from dse.export.runner import Bundle
from dse.models.backbones import Backbone
from dse.models.multiexit import MultiExitNet


def run_ort_benchmarks(settings: CalibrationSettings = CalibrationSettings(),
                       provider: str = DEFAULT_PROVIDER,
                       log: Callable[[str], None] = lambda _: None) -> Measurements:
    """Time every micro-benchmark through ONNX Runtime here (see the module docstring)."""
    return time_ort_benchmarks(settings, provider, log)[0]


def time_ort_benchmarks(settings: CalibrationSettings = CalibrationSettings(),
                        provider: str = DEFAULT_PROVIDER,
                        log: Callable[[str], None] = lambda _: None,
                        co_timed: Sequence[Sequence[Callable[[], Any]]] = ()
                        ) -> tuple[Measurements, Timing | None]:
    """:func:`run_ort_benchmarks`, timing the groups of ``co_timed`` in the same passes, as
    :func:`dse.cost.calibrate_measure.time_benchmarks` does for PyTorch."""
    check_provider(provider)
    threads = settings.threads or available_cpus()
    set_threads(threads)  # torch only exports here; pinned alike for a quiet machine
    clock = mb.timer(settings.clock, threads) if provider == DEFAULT_PROVIDER else time.perf_counter
    target_s = settings.target_ms / 1e3
    started = time.perf_counter()
    log(f"exporting micro-benchmarks to ONNX for {provider} with {threads} thread(s) ...")
    with tempfile.TemporaryDirectory(prefix="dse-ort-calibrate-") as tmp, torch.no_grad():
        ops = mb.op_specs(settings.quick)
        one_node = op_runner(lambda x: x + 1.0, torch.zeros(1, 4), threads, provider)
        calls = [one_node] + [op_runner(f, x, threads, provider) for _, f, x, _ in ops]
        doubles = [chain_runner(f, x, 2, threads, provider) for _, f, x, _ in ops]
        chains = [c for c in doubles if c is not None]
        profiles = [profile_graph(f, x, threads, Path(tmp), provider)
                    if d is None and downsamples(kind, recs) else None
                    for (kind, f, x, recs), d in zip(ops, doubles)]
        fixed = _fixed_cost_calls(Path(tmp), settings.criterion, provider, threads)
        block = layout_block(threads, Path(tmp), provider)
        peak_calls = [op_runner(lambda x, b=torch.randn(n, n): x @ b, torch.randn(n, n), threads,
                                provider) for n in ((256, 512) if settings.quick else (512, 1024))]
        log(f"timing {len(calls) + len(chains) + len(fixed)} graphs "
            f"({time.perf_counter() - started:.0f} s so far) ...")
        ref = (op_runner(*mb.reference_op(settings.reference_kernel), threads, provider)
               if settings.reference else None)
        ref_s = mb.reference_seconds(ref, clock) if ref else None
        benches = calls + fixed + peak_calls + chains
        timing = time_groups([benches, *co_timed], rounds=settings.rounds,
                             passes=settings.passes, target_s=target_s, clock=clock,
                             statistic=settings.statistic, reference=ref, reference_s=ref_s,
                             log=log if co_timed else lambda _: None)
        seconds = timing.items(0, len(benches)).seconds()
    graph_run = seconds[0]
    t_ops = seconds[1:1 + len(ops)]
    cut = len(seconds) - len(chains)
    seconds, t_chains = seconds[:cut], iter(seconds[cut:])
    t0, tk, k = seconds[-len(peak_calls) - 2], seconds[-len(peak_calls) - 1], _IDENTITY_EXITS
    peak = max(2 * n ** 3 / t / 1e9 for n, t in zip((256, 512) if settings.quick else (512, 1024),
                                                      seconds[-len(peak_calls):]))
    decision = max((tk - t0) / k - 2 * graph_run, 0.0)
    inference = max(t0 - 2 * graph_run, 0.0)
    t_double = [None if c is None else next(t_chains) for c in doubles]
    in_network = in_network_seconds(t_ops, t_double, graph_run,
                                    [p.share if p else None for p in profiles])
    reorder_us, reorder_per_kelem = fit_reorders(
        [(n, share * t) for p, t in zip(profiles, t_ops) if p for n, share in p.reorders])
    cases = [(kind, tuple(recs), t) for (kind, _, _, recs), t in zip(ops, in_network)]
    log(f"timed {len(cases)} micro-benchmarks in {time.perf_counter() - started:.0f} s")
    m = Measurements(tuple(cases), peak, call_us=0.0, decision_us=decision * 1e6,
                     inference_us=inference * 1e6, threads=threads,
                     runtime=runtime_name(provider), fusion=True,
                     graph_run_us=graph_run * 1e6, engine=f"ONNX Runtime ({provider})",
                     blocked_layout=reorder_per_kelem > 0, reorder_us=reorder_us,
                     reorder_us_per_kelem=reorder_per_kelem, layout_block=block,
                     reference_us=ref_s * 1e6 if ref_s else 0.0,
                     reference=settings.reference_kernel,
                     description=f"ONNX Runtime, {provider}, fp32, {threads} intra-op "
                                 "thread(s), batch 1, graph optimisation on (conv+bn+relu "
                                 "fused), cut graphs run by the bundle runner (fitted on "
                                 "this machine)")
    m = at_run_reference(m, timing.reference_now_s(), log)
    return m, co_timed_share(timing, len(benches), m)


#: Convolution fit groups (:func:`dse.cost.microbench.op_specs`) of dense convolutions.
_DENSE_CONVS = ("conv", "conv_gemm", "conv_gemm_strided")


def downsamples(kind: str, records: Sequence[Any]) -> bool:
    """Whether a micro-benchmark is timed by its profiled kernel share (:func:`in_network_seconds`):
    a pool, a global reduction or a strided dense convolution, ops that in a network read the
    blocked layout the convolution before them wrote, while their one-op graph reorders an
    input up to 4x its output (see the module docstring)."""
    if kind in ("pool", "reduce"):
        return True
    return kind in _DENSE_CONVS and bool(records) and getattr(records[0], "stride", 1) > 1


def in_network_seconds(single: Sequence[float], double: Sequence[float | None],
                       graph_run: float,
                       shares: Sequence[float | None] | None = None) -> list[float]:
    """What each single-op benchmark's op costs inside a network, in seconds.

    A one-op graph run costs ``a + b``: ``a`` what the run pays besides its op (the fixed
    ``graph_run``, plus ONNX Runtime's work at the graph's edges: layout reorders around
    blocked-layout convolutions, the output's copy to numpy), ``b`` the op itself. A network
    pays ``a`` once per graph (``graph_run_overhead_us`` in the model) and ``b`` per op, so
    stage 1 must be fitted to ``b``. Where the op keeps its input's shape, ``double[i]`` is a
    graph of two of them in a row, each with its own weights (``a + 2b``), and
    ``b = double - single``: the fixed cost and the edges cancel. Otherwise (``double[i]`` None:
    strided or channel-changing convolutions, linear, pooling, reductions, padding, views)
    ``b = single - graph_run``, edges included, unless ``shares[i]`` is given: then
    ``b = single * share``, the op's share of its one-op graph's run from ONNX Runtime's
    profiler (:func:`dse.export.ort_bench.profile_graph`; the calibration gives one for the ops
    :func:`downsamples` picks). Every result is at least 5 % of its one-op time (a difference
    of two medians can come out at or below zero for a tiny op).

    Our choice: an edge cost per byte, fitted on the chained ops and subtracted from the others,
    was tried and dropped: the edges of a strided convolution (input reorder of 4x its output)
    are not those of a shape-keeping one, and the subtraction drove small strided convolutions
    to the 5 % floor.
    """
    out = []
    for t, d, share in zip(single, double, shares or [None] * len(single)):
        if d is not None:
            b = d - t
        elif share is not None:
            b = t * share
        else:
            b = t - graph_run
        out.append(max(b, 0.05 * t))
    return out


def fit_reorders(samples: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(us per reorder, us per 1000 elements) of layout reorders from (elements, seconds)
    samples: non-negative least squares on relative error; (0, 0) with fewer than two sizes
    (no reorder seen: the provider keeps one layout, :mod:`dse.cost.layout` stays off)."""
    samples = [(n, t) for n, t in samples if n > 0 and t > 0]
    if len({n for n, _ in samples}) < 2:
        return 0.0, 0.0
    a = np.array([[1.0 / (t * 1e6), n / 1e3 / (t * 1e6)] for n, t in samples])
    fixed, per_kelem = nnls(a, np.ones(len(samples)))[0]
    return float(fixed), float(per_kelem)


#: Never-taken exits of the identity network that measures the decision cost.
_IDENTITY_EXITS = 8


def _fixed_cost_calls(tmp: Path, criterion: str, provider: str,
                      threads: int) -> list[Callable[[], Any]]:
    """Bundle-runner calls on identity segments with tiny heads: no early exit, then
    ``_IDENTITY_EXITS`` never-taken ones (every exit evaluated, the final one taken)."""
    torch.manual_seed(0)
    calls = []
    for n in (0, _IDENTITY_EXITS):
        net = MultiExitNet(Backbone([nn.Identity() for _ in range(n + 1)], _TinyHead()),
                           list(range(n)), [_TinyBranch() for _ in range(n)]).eval()
        bundle = Bundle(write_cut_bundle(net, (4, 1, 1), tmp / f"identity{n}", criterion),
                        provider=provider, threads=threads)
        calls.append(exit_calls(bundle, np.ones((1, 4, 1, 1), np.float32))[-1])
    return calls


class _TinyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


class _TinyBranch(_TinyHead):
    def __init__(self) -> None:
        super().__init__()
        self.conf = nn.Linear(4, 1)

    def forward(self, x):
        z = x.flatten(1)
        return self.fc(z), torch.sigmoid(self.conf(z)).squeeze(1)


def calibrate_ort(name: str, settings: CalibrationSettings = CalibrationSettings(),
                  provider: str = DEFAULT_PROVIDER,
                  log: Callable[[str], None] = lambda _: None) -> Profile:
    """Run every micro-benchmark through ONNX Runtime and return the fitted profile, whose one
    runtime is :func:`~dse.export.ort_bench.runtime_name` (``onnxruntime-cpu-fp32`` on CPU)."""
    started = time.perf_counter()
    m = run_ort_benchmarks(settings, provider, log)
    profile = fit_profile(name, m, settings, description=f"this machine through ONNX Runtime "
                          f"({provider}): fitted by dse profile calibrate --runtime onnxruntime")
    log(f"calibrated in {time.perf_counter() - started:.0f} s")
    return profile
