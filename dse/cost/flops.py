"""MAC accounting with fvcore: per block, per branch, and the cumulative cost of every exit.

fvcore counts one multiply-add as one "flop"; dse calls these MACs everywhere. Convs, linears and
adaptive pooling (one MAC per input element) are counted; batch norm is not (it folds into the
conv before it at inference), and element-wise ops
such as the residual add are not counted, and we report every op it skipped instead of dropping
it silently (``unsupported``).

Cost of exit n (DESIGN.md): the backbone up to exit n's block plus every branch evaluated on the
way (branches 1..n); the final exit pays the whole backbone, its head and all early branches.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn

logging.getLogger("fvcore").setLevel(logging.ERROR)

# Ops fvcore neither counts nor lists as ignored, which cost no multiply-adds worth reporting.
_ZERO_MAC_OPS = frozenset({"aten::sigmoid", "aten::softmax", "aten::log_softmax"})
_FOLDED_OPS = ("aten::batch_norm",)


@dataclass(frozen=True)
class BackboneMacs:
    block_macs: list[int]
    head_macs: int
    block_out_shapes: list[tuple[int, ...]]  # (C, H, W) per block, batch dimension dropped
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def total_macs(self) -> int:
        return sum(self.block_macs) + self.head_macs

    @property
    def cum_macs(self) -> list[int]:
        out, acc = [], 0
        for m in self.block_macs:
            acc += m
            out.append(acc)
        return out

    @property
    def cum_fractions(self) -> list[float]:
        total = self.total_macs or 1
        return [c / total for c in self.cum_macs]


def _analysis(module: nn.Module, inputs: tuple):
    with _quiet_jit():  # fvcore scripts its helpers on import
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs)
    # Batch norm folds into the preceding conv at inference time (and the commonly cited MAC
    # counts leave it out), so it costs no MACs here; the latency model still times it.
    analysis.set_op_handle(**{op: _no_macs for op in _FOLDED_OPS})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """fvcore traces with ``torch.jit``, which current torch marks deprecated with one warning
    per scripted helper (seven per count); the count is unaffected, so those warnings are
    silenced here, where they arise, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*is deprecated",
                                category=DeprecationWarning)
        yield


def _no_macs(inputs, outputs) -> Counter:
    return Counter()


def _unsupported(analysis) -> dict[str, int]:
    ops = Counter(analysis.unsupported_ops())
    return {op: n for op, n in sorted(ops.items()) if op not in _ZERO_MAC_OPS}


@torch.no_grad()
def backbone_macs(backbone: nn.Module, input_shape: Sequence[int]) -> BackboneMacs:
    """MACs of every block and the head for one input of shape (C, H, W) (batch 1)."""
    was_training = backbone.training
    backbone.eval()
    try:
        x = torch.zeros(1, *input_shape)
        shapes = [tuple(f.shape[1:]) for f in backbone.features(x)]
        analysis = _analysis(backbone, (x,))
        with _quiet_jit():
            by_module = analysis.by_module()
        blocks = [int(by_module.get(f"blocks.{i}", 0)) for i in range(len(backbone.blocks))]
        head = int(by_module.get("head", 0))
        return BackboneMacs(blocks, head, shapes, _unsupported(analysis))
    finally:
        backbone.train(was_training)


@torch.no_grad()
def branch_macs(branch: nn.Module, in_shape: Sequence[int]) -> int:
    """MACs of one exit branch on a feature map of shape (C, H, W) (batch 1)."""
    was_training = branch.training
    branch.eval()
    try:
        with _quiet_jit():
            return int(_analysis(branch, (torch.zeros(1, *in_shape),)).total())
    finally:
        branch.train(was_training)


def exit_cum_macs(block_macs: Sequence[int], head_macs: int, exit_blocks: Sequence[int],
                  exit_branch_macs: Sequence[int]) -> list[int]:
    """Cumulative MACs of each exit, early exits first, then the final exit.

    cost_n = sum(block_macs[: exit_blocks[n] + 1]) + sum(exit_branch_macs[: n + 1]);
    cost_final = sum(block_macs) + head_macs + sum(exit_branch_macs).
    """
    if len(exit_blocks) != len(exit_branch_macs):
        raise ValueError("one branch MAC count is needed per exit block")
    costs, branches = [], 0
    for block, macs in zip(exit_blocks, exit_branch_macs):
        branches += macs
        costs.append(sum(block_macs[: block + 1]) + branches)
    costs.append(sum(block_macs) + head_macs + branches)
    return costs


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
