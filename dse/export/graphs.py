"""Cut a trained :class:`~dse.models.multiexit.MultiExitNet` into ONNX graphs.

Early exit has a data-dependent branch that ONNX graphs (and TensorRT engines) do not run
cheaply: an ``If`` node costs the same whichever branch runs. So the network is cut where the
decision happens, and the runtime decides between graphs (:mod:`dse.export.runner`):

- segment n: the backbone blocks from the input (n = 0) or the block after exit n-1's attach
  point, up to exit n's attach point (the last segment ends with the last block);
- head n: exit n's branch, ``features -> logits`` plus ``confidence`` when the criterion is
  ``learned`` (the only one that reads it); the final head is the backbone's classifier;
- optionally one all-exits graph, ``input -> logits_0..logits_N`` (inline subnetwork
  collaboration applied, as the model predicts with it) plus ``confidence_0..`` for learned
  criteria: a single engine for users who want one and decide outside.

Our choice: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). It needs
no extra package (the torch.export-based one needs onnxscript), handles every backbone and
branch dse builds, and writes the same bytes for the same weights (tested). Every graph has a
dynamic batch axis named ``batch``; the runner feeds batch 1.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from dse.errors import DseError
from dse.models.multiexit import MultiExitNet
from dse.train.losses import isc_combine

#: ONNX opset of every exported graph (ONNX Runtime >= 1.11, TensorRT >= 8.4 read it).
OPSET = 17


class Segment(nn.Module):
    """Backbone blocks ``first..last`` (inclusive), in order."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Head(nn.Module):
    """An exit branch as a graph: logits, and the confidence only when asked for."""

    def __init__(self, branch: nn.Module, confidence: bool) -> None:
        super().__init__()
        self.branch = branch
        self.confidence = confidence

    def forward(self, x: torch.Tensor):
        logits, conf = self.branch(x)
        return (logits, conf) if self.confidence else logits


class AllExits(nn.Module):
    """Every exit's logits (ISC applied when the model uses it), then the early confidences."""

    def __init__(self, model: MultiExitNet, confidence: bool) -> None:
        super().__init__()
        self.model = model
        self.confidence = confidence

    def forward(self, x: torch.Tensor):
        outs = self.model(x)
        logits = [z for z, _ in outs]
        logits = isc_combine(logits) if self.model.isc else logits
        conf = [h for _, h in outs[:-1]] if self.confidence else []
        return tuple(logits + conf)


@dataclass(frozen=True)
class Graph:
    """One exported graph: file name, ONNX bytes, and its inputs and outputs as the manifest
    records them (``[{"name", "shape"}]``, ``"batch"`` for the dynamic axis)."""

    name: str
    data: bytes
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    """Which blocks each segment holds, and which exit heads follow them."""

    segments: list[tuple[int, int]]  # (first block, last block), inclusive
    exit_blocks: list[int]


def plan(model: MultiExitNet) -> Plan:
    """Segment n ends at exit n's attach block; the last one at the last block."""
    ends = list(model.exit_blocks) + [len(model.backbone.blocks) - 1]
    starts = [0] + [b + 1 for b in model.exit_blocks]
    return Plan(list(zip(starts, ends)), list(model.exit_blocks))


def to_onnx(module: nn.Module, example: torch.Tensor, name: str, input_names: list[str],
            output_names: list[str]) -> Graph:
    """Export ``module`` (eval mode) on ``example`` to ONNX bytes and check them."""
    import onnx  # here: only export needs it, and it is heavy

    module = module.eval()
    buffer = io.BytesIO()
    axes = {n: {0: "batch"} for n in input_names + output_names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        with torch.no_grad():
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=OPSET,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    with torch.no_grad():
        produced = module(example)
    produced = produced if isinstance(produced, tuple) else (produced,)
    # the exporter leaves some output sizes symbolic (after an in-place residual, say) where
    # ONNX Runtime infers numbers: state the sizes torch produced, only the batch axis dynamic
    for value, tensor in zip(proto.graph.output, produced):
        dims = value.type.tensor_type.shape.dim
        for i, size in enumerate(tensor.shape):
            if i == 0:
                dims[i].dim_param = "batch"
            else:
                dims[i].dim_value = int(size)
    data = proto.SerializeToString()
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # a bug in export, not a user error
        raise DseError(f"{name}: the exported graph fails onnx.checker ({exc})") from exc
    return Graph(name, data, _values(proto.graph.input), _values(proto.graph.output))


def _values(values) -> list[dict[str, Any]]:
    out = []
    for v in values:
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in v.type.tensor_type.shape.dim]
        out.append({"name": v.name, "shape": dims})
    return out


def export_graphs(model: MultiExitNet, input_shape: Sequence[int], *, confidence: bool,
                  all_exits: bool = False) -> tuple[Plan, list[Graph], list[Graph], Graph | None]:
    """(plan, segment graphs, head graphs, all-exits graph or None) for one input of
    ``input_shape`` (C, H, W); ``confidence`` adds the early heads' confidence output."""
    model = model.eval().cpu()
    p = plan(model)
    x = torch.zeros(1, *input_shape)
    segments, heads = [], []
    blocks = model.backbone.blocks
    with torch.no_grad():
        if not isinstance(blocks[0](x), torch.Tensor):
            raise DseError(f"backbone {model.backbone.name}: its blocks pass a list of feature "
                           "scales (a multi-scale network such as MSDNet), which dse export "
                           "does not split into ONNX segments yet")
    for n, (first, last) in enumerate(p.segments):
        seg = Segment([blocks[i] for i in range(first, last + 1)])
        in_name = "input" if n == 0 else "features"
        segments.append(to_onnx(seg, x, f"segment_{n}.onnx", [in_name], ["features"]))
        with torch.no_grad():
            x = seg(x)
        final = n == len(p.segments) - 1
        if final:
            heads.append(to_onnx(model.backbone.head, x, f"head_{n}.onnx", ["features"],
                                 ["logits"]))
        else:
            head = Head(model.branches[n], confidence)
            outs = ["logits", "confidence"] if confidence else ["logits"]
            heads.append(to_onnx(head, x, f"head_{n}.onnx", ["features"], outs))
    whole = None
    if all_exits:
        k = model.num_exits
        outs = [f"logits_{i}" for i in range(k)]
        outs += [f"confidence_{i}" for i in range(k - 1)] if confidence else []
        whole = to_onnx(AllExits(model, confidence), torch.zeros(1, *input_shape),
                        "all_exits.onnx", ["input"], outs)
    return p, segments, heads, whole
