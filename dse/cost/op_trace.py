"""Per-layer records of a network: what each op computes and moves, as plain numbers.

The latency model (:mod:`dse.cost.latency`) is a pure function of these records, so this is the
only torch-touching part of the cost code (torch is imported inside the tracing functions; the
record types import nothing). This module holds the record types and the tracer that fills
them; what each call is and computes (its kind, MACs, GEMM shape) comes from
:mod:`dse.cost.op_kinds`, whose public names are importable from here too. Tracing runs the
module once on a real input under a :class:`torch.overrides.TorchFunctionMode`, which sees every
torch-level call as eager PyTorch dispatches it: ``F.conv2d``, ``F.batch_norm``, ``F.relu``, the
residual ``+``, ``torch.flatten``, slicing, ``F.pad``, adaptive pooling. That is the granularity
at which eager PyTorch pays its per-op framework overhead, and where compiled runtimes
(TensorRT) fuse epilogues. Module calls (``nn.Module.__call__``, a Python-level cost of eager
execution) are counted with forward pre-hooks and attributed to the next op (``calls``).

Element counts rather than bytes are stored, so one trace serves every dtype:
``bytes = elements * dtype_bytes`` (see :meth:`LayerRecord.bytes_moved`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

from dse.cost.op_kinds import (CONV_KINDS, FALLBACK_KINDS, IGNORED_CALLS, OP_KINDS, classify,
                               conv_record, conv_stride, is_strided_im2col, linear_record,
                               pool_window)

# CONV_KINDS ... is_strided_im2col are dse.cost.op_kinds' names, importable from here as before.
__all__ = ["CONV_KINDS", "FALLBACK_KINDS", "OP_KINDS", "LayerRecord", "NetRecords", "classify",
           "is_strided_im2col", "torch_threads", "trace", "trace_branch", "trace_call",
           "trace_multiexit", "with_exits"]


_FUSION_HEADS = frozenset({*CONV_KINDS, "linear", "norm", "elementwise"})


@dataclass(frozen=True)
class LayerRecord:
    """One torch-level op: its kind, MACs and the elements it reads and writes."""

    name: str                    # the torch function, e.g. "conv2d", "batch_norm", "add"
    kind: str                    # one of OP_KINDS, or "call" (module calls that ran no op)
    macs: int = 0                # multiply-accumulates (window visits for pooling)
    in_elems: int = 0            # activation elements read (tensor inputs that are not weights;
                                 # for an im2col convolution also its unfolded-input traffic)
    weight_elems: int = 0        # parameter/buffer elements read
    out_elems: int = 0           # elements written
    out_shape: tuple[int, ...] = ()
    gemm: tuple[int, int, int] = (0, 0, 0)  # implicit-GEMM (M, N, K) for conv/linear, else 0s
    fusable: bool = False        # consumes the previous op's output and can be its epilogue
    calls: int = 0               # nn.Module calls dispatched just before this op
    alloc_elems: int = 0         # elements of newly allocated outputs (not in-place, not views)
    kernel_area: int = 0         # convolutions: kernel height x width (1: pointwise); else 0
    stride: int = 1              # convolutions: the largest stride; else 1

    def bytes_moved(self, dtype_bytes: float) -> float:
        """Bytes read (activations and weights) plus bytes written."""
        return (self.in_elems + self.weight_elems + self.out_elems) * dtype_bytes


@dataclass(frozen=True)
class NetRecords:
    """Records of a multi-exit network: per block, the head, and per early-exit branch."""

    blocks: tuple[tuple[LayerRecord, ...], ...]
    head: tuple[LayerRecord, ...]
    branches: tuple[tuple[LayerRecord, ...], ...] = ()   # one per early exit, in order
    exit_blocks: tuple[int, ...] = ()                     # block index each branch attaches to
    block_names: tuple[str, ...] = ()
    batch: int = 1
    input_elems: int = 0                                  # the network input's elements (0: unknown)

    def __post_init__(self) -> None:
        if len(self.branches) != len(self.exit_blocks):
            raise ValueError(f"{len(self.branches)} branches for {len(self.exit_blocks)} exit blocks")
        if list(self.exit_blocks) != sorted(set(self.exit_blocks)):
            raise ValueError(f"exit blocks must be increasing, got {self.exit_blocks}")
        if self.exit_blocks and not 0 <= self.exit_blocks[-1] < len(self.blocks) - 1:
            raise ValueError(f"exit block {self.exit_blocks[-1]} is not an attach point")

    def block_macs(self) -> list[int]:
        """Conv and linear MACs per block (pooling window visits left out)."""
        return [sum(r.macs for r in block if r.kind in (*CONV_KINDS, "linear"))
                for block in self.blocks]


def _func_name(func: Any) -> str:
    return getattr(func, "__name__", None) or str(func)


def _tensors(obj: Any) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


class _Recorder:
    """Collects LayerRecords from a TorchFunctionMode and module pre-hooks."""

    def __init__(self, weight_ids: set[int]) -> None:
        self.weight_ids = weight_ids
        self.records: list[LayerRecord] = []
        self.pending_calls = 0
        self._prev_out: Any = None

    def on_call(self, *_: Any) -> None:
        self.pending_calls += 1

    def on_op(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        import torch

        name = _func_name(func)
        outs = _tensors(out)
        if name in IGNORED_CALLS or not outs or not isinstance(outs[0], torch.Tensor):
            return
        kind = classify(name, args, kwargs)
        inputs = _tensors(args) + _tensors(kwargs)
        weights = [t for t in inputs if id(t) in self.weight_ids]
        acts = [t for t in inputs if id(t) not in self.weight_ids]
        macs, gemm = 0, (0, 0, 0)
        scratch = 0
        if kind in CONV_KINDS:
            macs, gemm = conv_record(name, kind, args, kwargs, outs[0])
            if kind == "conv_gemm" and gemm[2] != args[0].shape[1]:  # not a plain 1x1: im2col
                scratch = 2 * gemm[0] * gemm[2]  # the unfolded input is written, then read
        elif kind == "linear":
            macs, gemm = linear_record(name.rstrip("_"), args, outs[0])
        elif kind == "pool":
            macs = outs[0].numel() * pool_window(args, kwargs)
        prev = self._prev_out
        consumes_prev = prev is not None and any(
            t is prev or (t.data_ptr() == prev.data_ptr() and t.shape == prev.shape) for t in acts)
        prev_kind = self.records[-1].kind if self.records else None
        fusable = consumes_prev and (
            (kind in ("norm", "elementwise") and prev_kind in _FUSION_HEADS) or kind == "view")
        in_elems = sum(t.numel() for t in acts) + scratch
        out_elems = sum(t.numel() for t in outs)
        ptrs = {t.data_ptr() for t in inputs}
        alloc_elems = sum(t.numel() for t in outs if t.data_ptr() not in ptrs)
        if kind == "view":  # a view reads and writes nothing (eval-mode dropout included)
            in_elems = out_elems = alloc_elems = 0
        self.records.append(LayerRecord(
            name=name, kind=kind, macs=int(macs), in_elems=int(in_elems),
            weight_elems=int(sum(t.numel() for t in weights)), out_elems=int(out_elems),
            out_shape=tuple(outs[0].shape), gemm=tuple(int(g) for g in gemm), fusable=fusable,
            calls=self.pending_calls, alloc_elems=int(alloc_elems),
            kernel_area=int(math.prod(args[1].shape[2:])) if kind in CONV_KINDS else 0,
            stride=conv_stride(args, kwargs) if kind in CONV_KINDS else 1,
        ))
        self.pending_calls = 0
        self._prev_out = outs[0]

    def finish(self) -> list[LayerRecord]:
        if self.pending_calls:  # module calls after the last op (e.g. a trailing nn.Identity)
            if self.records:
                last = self.records[-1]
                self.records[-1] = replace(last, calls=last.calls + self.pending_calls)
            else:
                self.records.append(LayerRecord(name="module", kind="call",
                                                calls=self.pending_calls))
            self.pending_calls = 0
        return self.records


def _mode(rec: _Recorder) -> Any:
    from torch.overrides import TorchFunctionMode

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            rec.on_op(func, args, kwargs, out)
            return out

    return _Mode()


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Trace as a runtime running ``threads`` intra-op threads (None: as the process is set).

    Eager PyTorch picks a convolution's implementation by the thread count, and the records
    keep which one (``conv`` for oneDNN, ``conv_gemm`` for im2col + GEMM): single-threaded, it
    runs a 1x1 convolution by im2col + GEMM, multi-threaded by oneDNN. A calibrated host runtime
    (``threads: 1``) prices the two differently, so a trace taken in a process set to another
    thread count (a search training on every core) priced MobileNetV2 at 224 px 37 % above
    the same model traced at one thread. The count is restored on the way out.
    """
    import torch

    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def trace(module: Any, x: Any, threads: int | None = None) -> tuple[list[LayerRecord], Any]:
    """Run ``module(x)`` once (no grad) and return its records and its output (``threads``:
    see :func:`torch_threads`)."""
    import torch

    weight_ids = {id(p) for p in module.parameters()} | {id(b) for b in module.buffers()}
    rec = _Recorder(weight_ids)
    handles = [m.register_forward_pre_hook(rec.on_call) for m in module.modules()]
    try:
        with torch.no_grad(), _mode(rec), torch_threads(threads):
            out = module(x)
    finally:
        for h in handles:
            h.remove()
    return rec.finish(), out


def trace_call(fn: Any, weights: Sequence[Any] = ()) -> list[LayerRecord]:
    """Records of one call of ``fn()`` (a micro-benchmark); ``weights`` count as parameters."""
    import torch

    rec = _Recorder({id(w) for w in weights})
    with torch.no_grad(), _mode(rec):
        fn()
    return rec.finish()


def trace_multiexit(backbone: Any, input_shape: Sequence[int], exit_blocks: Sequence[int] = (),
                    branches: Sequence[Any] = (), batch: int = 1,
                    threads: int | None = None) -> NetRecords:
    """Records of every block, the head and every branch of an (early-exit) backbone.

    ``input_shape`` is (C, H, W); ``branches[i]`` attaches after block ``exit_blocks[i]``;
    ``threads``: the thread count of the runtime the records will be priced for
    (:func:`torch_threads`; ``Runtime.threads``).
    """
    import torch

    was_training = backbone.training
    backbone.eval()
    x = torch.randn(batch, *input_shape)
    input_elems = x.numel()
    view = getattr(backbone, "exit_input", lambda out: out)  # MSDNet: the coarsest scale
    blocks, feats = [], []
    for block in backbone.blocks:
        records, x = trace(block, x, threads)
        blocks.append(tuple(records))
        feats.append(view(x))
    head, _ = trace(backbone.head, view(x), threads)
    branch_records = []
    for b, branch in zip(exit_blocks, branches):
        branch.eval()
        records, _ = trace(branch, feats[b], threads)
        branch_records.append(tuple(records))
    backbone.train(was_training)
    return NetRecords(blocks=tuple(blocks), head=tuple(head), branches=tuple(branch_records),
                      exit_blocks=tuple(exit_blocks),
                      block_names=tuple(getattr(backbone, "block_names", ())), batch=batch,
                      input_elems=input_elems)


def trace_branch(branch: Any, in_shape: Sequence[int], batch: int = 1) -> tuple[LayerRecord, ...]:
    """Records of one exit branch on a (C, H, W) feature map (the search traces these per trial)."""
    import torch

    was_training = branch.training
    branch.eval()
    records, _ = trace(branch, torch.randn(batch, *in_shape))
    branch.train(was_training)
    return tuple(records)


def with_exits(net: NetRecords, exit_blocks: Sequence[int],
               branches: Sequence[Sequence[LayerRecord]]) -> NetRecords:
    """The same backbone records with another set of exits (trace the backbone once per study)."""
    return replace(net, exit_blocks=tuple(exit_blocks), branches=tuple(tuple(b) for b in branches))
