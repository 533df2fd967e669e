"""ONNX Runtime as a measuring instrument: sessions, cut networks and forced exits.

What ``dse profile calibrate|validate --runtime onnxruntime`` time is what a board runs:

- single ops and small graphs: the micro-benchmark modules exported with the same exporter as
  ``dse export`` (:func:`dse.export.graphs.to_onnx`, opset :data:`~dse.export.graphs.OPSET`)
  and run by an ``InferenceSession`` at batch 1 with the bundle runner's session options
  (graph optimisation on: ONNX Runtime folds batch norms into convolutions and fuses
  activations and residual adds into them, which is why an ONNX Runtime profile sets
  ``fusion: true``);
- early-exit networks: cut into segment and head graphs by :func:`dse.export.graphs.export_graphs`
  and run by the bundle runner itself (:class:`dse.export.runner.Bundle`, the code ``dse run``
  uses and bundles ship), with thresholds that force a chosen exit.

Threads are pinned: ``intra_op_num_threads`` = the thread count, ``inter_op_num_threads`` = 1.
"""
from __future__ import annotations

import copy
import json
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from dse.cost.layout import DEFAULT_BLOCK
from dse.cost.network_bench import forcing_thresholds
from dse.errors import ConfigError, UnknownNameError
from dse.export.graphs import export_graphs, to_onnx
from dse.export.runner import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, Bundle
from dse.models.multiexit import MultiExitNet

#: The measuring engines of ``dse profile calibrate --runtime``.
ENGINES = ("pytorch", "onnxruntime")
DEFAULT_PROVIDER = "CPUExecutionProvider"


def check_engine(engine: str) -> str:
    """``engine`` if known (``pytorch``, ``onnxruntime``), else a one-line error."""
    if engine not in ENGINES:
        raise UnknownNameError(f"--runtime {engine!r}: expected one of {', '.join(ENGINES)}")
    return engine


def check_provider(provider: str) -> str:
    """``provider`` if this ONNX Runtime build has it, else a one-line error naming those it has."""
    import onnxruntime as ort  # heavy; only the ONNX Runtime path needs it

    available = ort.get_available_providers()
    if provider not in available:
        raise UnknownNameError(f"--provider {provider!r} is not available in this ONNX Runtime "
                               f"build; available: {', '.join(available)}")
    return provider


def runtime_name(provider: str, dtype: str = "fp32") -> str:
    """The profile runtime an ONNX Runtime calibration writes: ``onnxruntime-cpu-fp32`` for
    ``CPUExecutionProvider``, ``onnxruntime-cuda-fp32`` for ``CUDAExecutionProvider``, ..."""
    short = provider[:-len("ExecutionProvider")] if provider.endswith("ExecutionProvider") else provider
    return f"onnxruntime-{short.lower()}-{dtype}"


def session_options(threads: int):
    """The bundle runner's session options with ``threads`` intra-op threads (pinned)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


class _Op(nn.Module):
    """A functional op as a module, so it exports with its input as the graph's input."""

    def __init__(self, f: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor):
        return self.f(x)  # an in-place op exports as its ONNX node, writing a new output


def _op_session(f: Callable[[torch.Tensor], Any], x: torch.Tensor, opts, provider: str):
    """(session, feed) of ``f(x)`` exported to ONNX as a one-op graph, at batch 1."""
    import onnxruntime as ort

    graph = to_onnx(_Op(f), x.clone(), "op.onnx", ["x"], ["y"])
    session = ort.InferenceSession(graph.data, sess_options=opts,
                                   providers=list(dict.fromkeys([provider, DEFAULT_PROVIDER])))
    return session, {"x": np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)}


def op_runner(f: Callable[[torch.Tensor], Any], x: torch.Tensor, threads: int,
              provider: str = DEFAULT_PROVIDER) -> Callable[[], Any]:
    """A call running ``f(x)`` exported to ONNX, on one ONNX Runtime session, at batch 1."""
    session, feed = _op_session(f, x, session_options(threads), provider)
    return lambda: session.run(None, feed)


@dataclass(frozen=True)
class GraphProfile:
    """What ONNX Runtime's profiler saw in the runs of a one-op graph, as shares of a run."""

    share: float                                  # the op's own kernels (reorders left out)
    reorders: tuple[tuple[int, float], ...] = ()  # (elements, share of a run) per reorder node


def profile_graph(f: Callable[[torch.Tensor], Any], x: torch.Tensor, threads: int, folder: Path,
                  provider: str = DEFAULT_PROVIDER, runs: int = 20) -> GraphProfile:
    """Profile ``runs`` runs of ``f(x)`` as a one-op graph (:func:`op_runner`) with ONNX
    Runtime's profiler (:func:`read_profile`; the profile is written under ``folder`` and
    removed).

    Shares are ratios of two wall times of the same runs, so a loaded machine, which stretches
    both, moves them far less than either; the calibration multiplies them by the harness's
    CPU time of the one-op graph.
    """
    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(folder) / "share")
    session, feed = _op_session(f, x, opts, provider)
    for _ in range(runs):
        session.run(None, feed)
    path = Path(session.end_profiling())
    try:
        return read_profile(json.loads(path.read_text()))
    finally:
        path.unlink(missing_ok=True)


def read_profile(events: Sequence[dict[str, Any]]) -> GraphProfile:
    """An ONNX Runtime profile (its JSON events) as shares of the ``model_run`` time: the op
    nodes' kernels (layout reorders left out), and each reorder node with its tensor's elements
    (float32 output bytes / 4) (pure; see :func:`profile_graph`)."""
    total = sum(e.get("dur", 0) for e in events if e.get("name") == "model_run")
    if total <= 0:
        raise ValueError("the ONNX Runtime profile has no model_run event")
    kernels, reorders = 0.0, {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        if str(args.get("op_name", "")).startswith("Reorder"):
            key = (e["name"], int(args.get("output_size", 0)) // 4)
            reorders[key] = reorders.get(key, 0.0) + e.get("dur", 0)
        else:
            kernels += e.get("dur", 0)
    return GraphProfile(min(kernels / total, 1.0),
                        tuple((elems, dur / total) for (_, elems), dur in reorders.items()))


#: Input channels tried, fewest first, for the layout's channel block (:func:`layout_block`).
BLOCK_PROBES = (4, 8, 16, 32)


def layout_block(threads: int, folder: Path, provider: str = DEFAULT_PROVIDER,
                 default: int = DEFAULT_BLOCK) -> int:
    """The channel block of ONNX Runtime's blocked convolution layout here, observed: the fewest
    input channels (of :data:`BLOCK_PROBES`) at which a dense 3x3 convolution, as a one-op graph,
    reorders its plain input rather than reading it directly (MLAS reads it directly below its
    block: 16 with AVX-512, 8 with AVX2). ``default`` when no probe reorders its input (no
    blocked layout)."""
    for channels in BLOCK_PROBES:
        gen = torch.Generator().manual_seed(channels)
        x = torch.randn(1, channels, 16, 16, generator=gen)
        w = torch.randn(2 * BLOCK_PROBES[-1], channels, 3, 3, generator=gen)
        profile = profile_graph(lambda t, w=w: torch.nn.functional.conv2d(t, w, None, 1, 1), x,
                                threads, folder, provider, runs=2)
        if input_reordered(profile, x.numel()):
            return channels
    return default


def input_reordered(profile: GraphProfile, input_elems: int) -> bool:
    """Whether a one-op graph's profile reorders a tensor of its input's size (or the input
    padded up to a channel block: up to twice its channels)."""
    return any(input_elems <= n < 2 * input_elems for n, _ in profile.reorders)


def chain_runner(f: Callable[[torch.Tensor], Any], x: torch.Tensor, links: int, threads: int,
                 provider: str = DEFAULT_PROVIDER) -> Callable[[], Any] | None:
    """A call running ``f`` ``links`` times in a row (``f(f(x))`` for 2) as one graph, or None
    when ``f`` does not keep its input's shape (a chain needs its output to feed it again).

    Timed against the one-op graph of :func:`op_runner`, the difference is what one more ``f``
    costs inside a graph: the run's fixed cost and what ONNX Runtime does at the graph's edges
    (layout reorders around blocked-layout convolutions, the output's copy to numpy) cancel
    (:func:`dse.export.ort_calibrate.in_network_seconds`)."""
    with torch.no_grad():
        if tuple(f(x.clone()).shape) != tuple(x.shape):
            return None

    copies = [_with_own_tensors(f, 1.0 - 1e-3 * n) for n in range(links)]

    def chained(z: torch.Tensor) -> Any:
        for g in copies:
            z = g(z)
        return z
    return op_runner(chained, x, threads, provider)


def _with_own_tensors(f: Callable[[torch.Tensor], Any],
                      scale: float) -> Callable[[torch.Tensor], Any]:
    """``f`` with its tensor default arguments (a micro-benchmark's weights, statistics or
    second operand) replaced by copies times ``scale``: each link of a chain reads its own
    weights, as the layers of a network do, rather than the previous link's, hot in cache
    (and distinct values, so no exporter or graph optimiser shares them)."""
    defaults = getattr(f, "__defaults__", None)
    if not defaults or not isinstance(f, types.FunctionType):
        return f
    own = tuple(d.clone() * scale if isinstance(d, torch.Tensor) else d for d in defaults)
    return types.FunctionType(f.__code__, f.__globals__, f.__name__, own, f.__closure__)


def write_cut_bundle(model: MultiExitNet, input_shape: Sequence[int], folder: str | os.PathLike,
                     criterion: str = "maxprob") -> Path:
    """Cut ``model`` into segment and head graphs in ``folder`` with the manifest keys the
    bundle runner reads (a calibration network has no dataset, classes or config to record;
    ``dse export`` writes the full manifest for trained models)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    plan, segments, heads, _ = export_graphs(model, input_shape, confidence=criterion == "learned")
    exits = []
    for n, (seg, head) in enumerate(zip(segments, heads)):
        exits.append({"index": n, "segment": seg.name, "head": head.name,
                      "final": n == len(heads) - 1})
    for g in segments + heads:
        (out / g.name).write_bytes(g.data)
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
                "input": {"name": "input", "shape": [1, *input_shape], "dtype": "float32"},
                "criterion": {"name": criterion, "thresholds": [0.5] * (len(exits) - 1)},
                "isc": bool(model.isc), "exits": exits,
                "graphs": {g.name: {"inputs": g.inputs, "outputs": g.outputs}
                           for g in segments + heads}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def forced(bundle: Bundle, exit_at: int) -> Bundle:
    """The bundle (sharing its sessions) with thresholds that send every input out at early
    exit ``exit_at`` (== number of early exits: the final exit)."""
    out = copy.copy(bundle)
    out.thresholds = forcing_thresholds(bundle.criterion, len(bundle.exits) - 1, exit_at)
    return out


def exit_calls(bundle: Bundle, x: np.ndarray) -> list[Callable[[], Any]]:
    """One call per exit of ``bundle`` (early exits, then the final): ``infer`` forced there,
    each checked to leave where it is sent."""
    x = bundle.check_inputs(x)
    calls = []
    for k in range(len(bundle.exits)):
        b = forced(bundle, k)
        got = b.infer(x)[1]
        if got != k:
            raise ConfigError(f"{bundle.folder}: forced exit {k} but the input left at {got}")
        calls.append(lambda b=b: b.infer(x))
    return calls
