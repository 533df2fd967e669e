"""Analytical latency and energy model: per-layer records + profile + runtime -> milliseconds.

A pure function (numbers in, numbers out; no torch, no files), so the search can score thousands
of candidates and the tests can check it by hand.

Kernels. With ``runtime.fusion`` on (TensorRT, native engines), an op that consumes the previous
op's output and is a norm/element-wise op (or a view) joins that op's kernel as an epilogue:
conv+bn+relu, conv+bn+add+relu are one kernel; the intermediate tensors are never written, so the
fused kernel reads the head's inputs, every weight and any extra operand (the residual), and
writes only the last output. Without fusion (PyTorch eager) every op is its own kernel.

Per kernel (a roofline with a fixed cost), with ``p = runtime.op(kind)``::

    sat       = prod over d in (M, N, K) of d / (d + p.d_half)          (GEMM shape efficiency)
    t_compute = 2 * MACs / (peak_gflops[dtype] * clock_scale * sm_scale * p.compute_eff * sat)
    t_memory  = bytes_moved / (memory_bandwidth * bandwidth_scale * p.memory_eff)
    device    = max(t_compute, t_memory) + (1 - p.overlap) * min(t_compute, t_memory)
    host      = p.overhead_us + calls * call_overhead_us
                + alloc_us_per_mb * new output MB     (outputs >= alloc_min_kb only)

Op classes. ``p`` is the runtime's parameter set of the kernel's class: dense convolution
(``conv``; a 1x1 convolution uses ``pwconv`` when the runtime has it), depthwise (``dwconv``: its few MACs per byte make it
memory-bound, the ``t_memory`` side of the roofline), ``linear``, and the memory-bound norm,
element-wise, pooling and reduction kernels. On a runtime with ``tensor_core_align`` (FP16/INT8
Tensor Cores), a GEMM whose output or input channels are not multiples of it runs at
``unaligned_eff`` x ``compute_eff`` (CUDA-core rate). The runtime's ``fit`` multipliers
(dse.cost.published) scale these per class; every host term is multiplied by
``Profile.host_scale``: the fit's ``overhead`` times the host CPU clock ratio of the power mode
(eager PyTorch on a Jetson's ARM cores is host-bound, so a slower CPU clock slows it), while
compute scales with the power mode's GPU clock (``clock_scale``) and the fraction of SMs it
leaves on (``sm_scale``: its GPU TPCs over the device's), and memory traffic with its EMC clock
(``bandwidth_scale``: bandwidth proportional to the memory clock, our choice). All three are 1
in a mode that does not cap them (see dse.cost.profiles).

The allocation term is what an eager CPU runtime pays for a large output: the C allocator
hands out fresh pages (mmap above its threshold, 128 KiB by default in glibc) and every page
faults when first written. Runtimes with a memory pool (TensorRT, ncnn, CUDA's caching
allocator) set it to 0.

``sat`` is the half-saturation (Hockney n_1/2) form: small GEMMs fill few vector lanes, tiles or
SMs. Besides each dimension's own half size, ``sat`` has an output-size factor
``MN / (MN + p.mn_half)``: a GPU computes a GEMM's M x N output in tiles (one thread block
each) spread over its SMs, and a batch-1 layer whose output covers few tiles leaves SMs idle
(wave quantisation), however large K is. The shipped Jetson FP16/INT8 runtimes set it to one 128 x 128
output tile per SM (``mn_half = SMs x 16384``, our choice: the fits to published rows put it
at 0.3-0.5 x two tiles per SM). A power mode with fewer TPCs has fewer SMs to fill, so the
model multiplies ``mn_half`` by ``sm_scale`` where it reads it (:func:`saturation`); the
profile's stored value stays the full device's. This is what sets VGG-16 apart from the ResNets: at every
resolution VGG's layers are 4x wider (256 channels at 56 x 56 against 64; M x N of 0.1-3.2 M
against 0.025-0.2 M), so they reach a larger fraction of the peak; without the factor, a fit to
the ResNets alone predicted VGG-16 1.5-3x too slow (benchmarks/published_latency.py, README). ``overlap`` = 1 is the classic roofline (compute and memory traffic overlap, GPUs); 0 adds
them (e.g. CPU weight re-layout before the GEMM). Host cost (framework dispatch, launch) and
device cost add up, except on ``async_launch`` runtimes (PyTorch on a GPU) where, between two
synchronisations, the host queues kernels while the device runs them: that stretch costs
``max(sum host, sum device)``.

Exits. Exit n's decision reads a score back to the host (a sync on a GPU) and costs
``decision_overhead_us``. The path to exit n is stretches 1..n, stretch k being the blocks after
exit k-1 up to exit k's block plus branch k, each ended by its decision::

    latency(exit n) = inference_overhead + sum_{k<=n} (stretch_k + decision)
    latency(final)  = inference_overhead + sum_{k<=N} (stretch_k + decision) + rest + head

A runtime that runs a cut network (:mod:`dse.export`: one graph per backbone segment and one
per exit head, e.g. ONNX Runtime sessions) pays ``graph_run_overhead_us`` per graph run: two
per stretch, the final stretch included (0 for eager runtimes, which run no graphs). A runtime
with ``blocked_layout`` (ONNX Runtime on CPU: convolutions in NCHWc) is priced graph by graph
after :func:`dse.cost.layout.plan`: each tensor the graph reorders between its blocked and plain
layouts costs ``reorder_us + reorder_us_per_kelem * elements / 1000`` (its channel block,
``layout_block``, decides which convolutions read plain input), and a residual add whose
shortcut arrives plain is its own kernel instead of the convolution's epilogue.

Expected latency is ``sum_n p_n * latency(n)`` (DESIGN.md); energy is ``power_w * latency``
(W x ms = mJ).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from dse.cost.layout import plan
from dse.cost.op_kinds import is_strided_im2col
from dse.cost.op_trace import LayerRecord, NetRecords

if TYPE_CHECKING:
    from dse.cost.profiles import Device, OpParams, Profile, Runtime


@dataclass(frozen=True)
class Kernel:
    """One launched kernel: a record, or a record plus the epilogues fused into it."""

    kind: str
    macs: int
    in_elems: int
    weight_elems: int
    out_elems: int
    gemm: tuple[int, int, int]
    calls: int
    ops: int = 1
    alloc_elems: int = 0
    kernel_area: int = 0
    stride: int = 1

    @classmethod
    def of(cls, r: LayerRecord) -> "Kernel":
        return cls(r.kind, r.macs, r.in_elems, r.weight_elems, r.out_elems, r.gemm, r.calls,
                   alloc_elems=r.alloc_elems, kernel_area=getattr(r, "kernel_area", 0),
                   stride=getattr(r, "stride", 1))

    def op_kind(self, runtime: "Runtime") -> str:
        """The parameter set this kernel uses: ``pwconv`` for a 1x1 convolution and
        ``conv_gemm_strided`` for a strided im2col one when the runtime has them, else its own
        kind (:data:`dse.cost.op_kinds.FALLBACK_KINDS`)."""
        if self.kind == "conv" and self.kernel_area == 1 and "pwconv" in runtime.ops:
            return "pwconv"
        if is_strided_im2col(self) and "conv_gemm_strided" in runtime.ops:
            return "conv_gemm_strided"
        return self.kind

    def tensor_core_aligned(self, align: int) -> bool:
        """Whether the GEMM's output and input channels are multiples of ``align``."""
        n, k = self.gemm[1], self.gemm[2] // max(self.kernel_area, 1)
        return n % align == 0 and k % align == 0

    def bytes_moved(self, dtype_bytes: float) -> float:
        return (self.in_elems + self.weight_elems + self.out_elems) * dtype_bytes


def kernels(records: Sequence[LayerRecord], fusion: bool) -> list[Kernel]:
    """Group records into kernels; with ``fusion`` a fusable record joins the kernel before it."""
    out: list[Kernel] = []
    for r in records:
        if not (fusion and out and r.fusable and out[-1].kind != "call"):
            out.append(Kernel.of(r))
            continue
        k = out[-1]
        view = r.kind == "view"
        out[-1] = Kernel(
            kind=k.kind, macs=k.macs + r.macs,
            in_elems=k.in_elems + (0 if view else max(r.in_elems - k.out_elems, 0)),
            weight_elems=k.weight_elems + r.weight_elems,
            out_elems=k.out_elems if view else r.out_elems,
            gemm=k.gemm, calls=k.calls + r.calls, ops=k.ops + 1,
            alloc_elems=k.alloc_elems if view else r.alloc_elems, kernel_area=k.kernel_area,
            stride=k.stride)
    return out


def saturation(gemm: Sequence[int], p: "OpParams", sm_scale: float = 1.0) -> float:
    """prod d / (d + d_half) over the GEMM dims that have a half-saturation size, times
    MN / (MN + mn_half * sm_scale) for the output size: with a fraction ``sm_scale`` of the SMs
    on, fewer output tiles fill them (see the module docstring)."""
    sat = 1.0
    for d, half in zip(gemm, (p.m_half, p.n_half, p.k_half)):
        if half > 0 and d > 0:
            sat *= d / (d + half)
    out, mn_half = gemm[0] * gemm[1], p.mn_half * sm_scale
    if mn_half > 0 and out > 0:
        sat *= out / (out + mn_half)
    return sat


def alloc_us(k: Kernel, runtime: "Runtime") -> float:
    """Cost of fresh memory for a large new output (page faults; eager CPU runtimes)."""
    nbytes = k.alloc_elems * runtime.dtype_bytes
    if not runtime.alloc_us_per_mb or nbytes < runtime.alloc_min_kb * 1024:
        return 0.0
    return runtime.alloc_us_per_mb * nbytes / 1e6


_GEMM_KINDS = ("conv", "conv_gemm", "conv_gemm_strided", "pwconv", "linear")


def kernel_time_us(k: Kernel, device: "Device", runtime: "Runtime",
                   clock_scale: float = 1.0, host_scale: float = 1.0,
                   bandwidth_scale: float = 1.0, sm_scale: float = 1.0) -> tuple[float, float]:
    """(host_us, device_us) of one kernel; see the module docstring for the formula. The scales
    are the power mode's (dse.cost.profiles.Profile: clock_scale, host_scale, bandwidth_scale,
    sm_scale); 1 is the device as its peaks are written."""
    host = k.calls * runtime.call_overhead_us + alloc_us(k, runtime)
    if k.kind == "call":
        return host * host_scale, 0.0
    kind = k.op_kind(runtime)
    p = runtime.op(kind)
    host = (host + p.overhead_us) * host_scale
    t_compute = 0.0
    if k.macs:
        flops_per_us = device.peak_gflops[runtime.dtype] * 1e3 * clock_scale * sm_scale
        eff = p.compute_eff
        if (runtime.tensor_core_align and kind in _GEMM_KINDS
                and not k.tensor_core_aligned(runtime.tensor_core_align)):
            eff *= runtime.unaligned_eff
        t_compute = 2.0 * k.macs / (flops_per_us * eff * saturation(k.gemm, p, sm_scale))
    bytes_per_us = device.memory_bandwidth_gbs * 1e3 * bandwidth_scale * p.memory_eff
    t_memory = k.bytes_moved(runtime.dtype_bytes) / bytes_per_us
    hi, lo = max(t_compute, t_memory), min(t_compute, t_memory)
    return host, hi + (1.0 - p.overlap) * lo


def segment_time_us(records: Sequence[LayerRecord], device: "Device", runtime: "Runtime",
                    clock_scale: float = 1.0, host_scale: float = 1.0,
                    bandwidth_scale: float = 1.0, sm_scale: float = 1.0) -> tuple[float, float]:
    """(host_us, device_us) summed over a segment's kernels (scales: :func:`kernel_time_us`)."""
    host = dev = 0.0
    for k in kernels(records, runtime.fusion):
        h, d = kernel_time_us(k, device, runtime, clock_scale, host_scale, bandwidth_scale,
                              sm_scale)
        host += h
        dev += d
    return host, dev


@dataclass(frozen=True)
class LatencyPrediction:
    """Per-exit latency (early exits, then the final exit) and its parts, in milliseconds."""

    exit_ms: tuple[float, ...]
    backbone_ms: float            # the backbone alone (no exits, no decisions)
    block_ms: tuple[float, ...]   # each block on its own
    branch_ms: tuple[float, ...]  # each branch on its own (decision excluded)
    head_ms: float
    decision_ms: float
    kernels: int                  # kernels launched by the backbone alone


def _runtime_of(profile: "Profile", runtime: "Runtime | str | None") -> "Runtime":
    return runtime if runtime is not None and not isinstance(runtime, str) else profile.runtime(runtime)


def predict(net: NetRecords, profile: "Profile", runtime: "Runtime | str | None" = None) -> LatencyPrediction:
    """Latency of every exit of ``net`` on ``profile`` with ``runtime`` (default: the profile's)."""
    rt = _runtime_of(profile, runtime)
    hs = profile.host_scale(rt)
    scales = (profile.clock_scale(rt), hs, profile.bandwidth_scale(rt), profile.sm_scale(rt))
    dev = profile.device

    def combine(host: float, device_us: float) -> float:
        return max(host, device_us) if rt.async_launch else host + device_us

    blocks = [segment_time_us(b, dev, rt, *scales) for b in net.blocks]
    branches = [segment_time_us(b, dev, rt, *scales) for b in net.branches]
    head = segment_time_us(net.head, dev, rt, *scales)

    def graph(records: Sequence[Sequence[LayerRecord]], input_elems: int,
              parts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """(host, device) parts of one graph run: ``records`` (its blocks, or a branch or the
        head) read a tensor of ``input_elems``; ``parts`` are their times without a layout
        plan."""
        if not rt.blocked_layout:
            return parts
        planned, reorders = plan(records, input_elems, rt.layout_block)
        return [segment_time_us(b, dev, rt, *scales) for b in planned] + [
            (0.0, sum(rt.reorder_us + n * rt.reorder_us_per_kelem / 1e3 for n in reorders))]

    def segment(first: int, stop: int) -> list[tuple[float, float]]:
        source = _out_elems(net.blocks[first - 1]) if first else net.input_elems
        return graph(net.blocks[first:stop], source, blocks[first:stop])

    def stretch(parts: Sequence[tuple[float, float]]) -> float:
        runs = 2 * rt.graph_run_overhead_us  # a segment and an exit head
        return combine(runs + sum(h for h, _ in parts), sum(d for _, d in parts))

    decision, inference = rt.decision_overhead_us * hs, rt.inference_overhead_us * hs
    exit_us, acc, start = [], inference, 0
    for n, b in enumerate(net.exit_blocks):
        branch = graph([net.branches[n]], _out_elems(net.blocks[b]), [branches[n]])
        acc += stretch(segment(start, b + 1) + branch) + decision
        exit_us.append(acc)
        start = b + 1
    final = graph([net.head], _out_elems(net.blocks[-1]), [head])
    exit_us.append(acc + stretch(segment(start, len(net.blocks)) + final))
    backbone_us = inference + stretch(segment(0, len(net.blocks)) + final)
    n_kernels = sum(len(kernels(s, rt.fusion)) for s in (*net.blocks, net.head))
    return LatencyPrediction(
        exit_ms=tuple(t / 1e3 for t in exit_us), backbone_ms=backbone_us / 1e3,
        block_ms=tuple(combine(*b) / 1e3 for b in blocks),
        branch_ms=tuple(combine(*b) / 1e3 for b in branches),
        head_ms=combine(*head) / 1e3, decision_ms=decision / 1e3, kernels=n_kernels)


def _out_elems(records: Sequence[LayerRecord]) -> int:
    """Elements of a block's output (its last record that writes any; 0 for none)."""
    return next((r.out_elems for r in reversed(records) if r.out_elems), 0)


def expected_latency_ms(exit_ms: Sequence[float], exit_fractions: Sequence[float]) -> float:
    """sum_n p_n * latency_n, with p_n the fraction of inputs leaving at exit n (sums to 1)."""
    if len(exit_ms) != len(exit_fractions):
        raise ValueError(f"{len(exit_fractions)} exit fractions for {len(exit_ms)} exits")
    if any(p < 0 for p in exit_fractions) or abs(sum(exit_fractions) - 1.0) > 1e-6:
        raise ValueError(f"exit fractions must be >= 0 and sum to 1, got {list(exit_fractions)}")
    return float(sum(p * t for p, t in zip(exit_fractions, exit_ms)))


def energy_mj(latency_ms: float, runtime: "Runtime") -> float:
    """Energy of one inference: average power (W) x latency (ms) = millijoules. A runtime
    selected in a power mode (``Profile.runtime("NAME@MODE")``) has its power capped at the
    mode's budget, so this is at most budget_w x latency_ms."""
    return runtime.power_w * latency_ms
