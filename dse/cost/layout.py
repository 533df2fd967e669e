"""Where a runtime with a blocked convolution layout reorders tensors, and which adds it cannot fuse.

ONNX Runtime on CPU runs convolutions, pools and their fused epilogues in a blocked layout
(NCHWc: channels in blocks of 8 or 16) and every other op in the plain one (NCHW); a graph's
inputs and outputs are plain. Where a tensor crosses between the two, the graph runs a reorder
node, a copy of the whole tensor; and a residual add fuses into the convolution before it only
when its shortcut operand is blocked too. ONNX Runtime's profiler shows both on the validation
networks (2-core VM, one thread): ResNet-18 at 224 px run as one graph reorders only its
output; a cut CIFAR ResNet-56 segment starts with a reorder of its plain input, and after the
first option-A (pad) shortcut, which runs in plain layout, every later block runs its add and
ReLU unfused between two reorders (~38 us a block at 32x16x16), because each block's identity
shortcut is the previous block's plain output.

:func:`plan` replays that on one graph's records (pure: records in, records and tensor sizes
out). The rules, per block (its input is the previous block's output, the graph's input for
the first):

- a convolution reads its input in blocked layout: the block's first convolution reorders the
  block's input if it is plain (one reorder, shared by a projection shortcut reading the same
  input), except a dense convolution with fewer input channels than the channel block, which
  reads plain input directly (MLAS does so below its block: 16 with AVX-512, 8 with AVX2; the
  runtime's ``layout_block``, which ONNX Runtime's calibration observes, default 16); later
  convolutions read the blocked output of the one before;
- a pad (option-A shortcut) reads the block's input in plain layout (a reorder if blocked) and
  gives a plain shortcut; an add's shortcut is plain after a pad, blocked after a projection
  convolution (the add changes the block's size), else the block's input (identity);
- an add with a plain shortcut is not fused: the main path's blocked output is reordered, the
  add (and what fuses into it) runs plain, and the block's output is plain;
- any other op that does not fuse (a norm or element-wise op starting a branch, a linear layer)
  runs plain, reordering a blocked input; pools, reductions and fused epilogues keep the layout,
  except a pool or reduction that is its graph's first op, which ONNX Runtime runs blocked
  (reordering the graph's input; a pooling exit head: reorder, pool, reorder, classifier);
- a graph's output is plain: a blocked output is reordered at the end.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from dse.cost.op_kinds import CONV_KINDS
from dse.cost.op_trace import LayerRecord

#: Record kinds that keep their input's layout (convolutions, op_kinds.CONV_KINDS, run blocked).
LAYOUT_KEEPING = frozenset({"pool", "reduce"})
#: The channel block when none was observed: dense convolutions with fewer input channels than
#: the block read plain input directly (MLAS with AVX-512; AVX2's block is 8).
DEFAULT_BLOCK = 16


def _reads_plain_directly(r: LayerRecord, block: int) -> bool:
    if r.kind == "dwconv":
        return False
    channels = r.gemm[2] // max(r.kernel_area, 1)
    return 0 < channels < block


def _is_residual_add(r: LayerRecord) -> bool:
    return r.kind == "elementwise" and r.name in ("add", "add_", "__add__", "__iadd__") \
        and r.out_elems > 0 and r.in_elems >= 2 * r.out_elems


def plan(blocks: Sequence[Sequence[LayerRecord]], input_elems: int,
         channel_block: int = DEFAULT_BLOCK) -> tuple[list[list[LayerRecord]], list[int]]:
    """One graph's blocks with each add that cannot fuse marked ``fusable=False``, and the
    element counts of the tensors the graph reorders (see the module docstring);
    ``channel_block`` is the layout's channel block."""
    plain, size = True, input_elems  # the graph's input arrives plain
    first_op = True
    reorders: list[int] = []
    out: list[list[LayerRecord]] = []
    for block in blocks:
        block_plain, block_size = plain, size
        shortcut_plain = None  # None: no pad seen; the add's shortcut decided at the add
        has_conv = False
        records = []
        for r in block:
            if r.kind in ("call", "view"):
                records.append(r)
                continue
            graph_start, first_op = first_op, False
            if r.kind in CONV_KINDS:
                if not has_conv:  # the block's first convolution reads the block's input
                    if block_plain and not _reads_plain_directly(r, channel_block):
                        reorders.append(block_size)  # shared by a projection shortcut's conv
                elif plain:  # a convolution after a plain op in the block
                    reorders.append(size)
                has_conv, plain = True, False
            elif r.kind == "pad":
                if not block_plain:
                    reorders.append(block_size)
                shortcut_plain = True
                records.append(r)
                size = r.out_elems or size
                continue  # the main path's layout is unchanged by its shortcut
            elif _is_residual_add(r):
                if shortcut_plain is None:
                    shortcut_plain = block_plain if r.out_elems == block_size else False
                if shortcut_plain:
                    if not plain:
                        reorders.append(r.out_elems)
                    r = replace(r, fusable=False)
                    plain = True
            elif r.kind in LAYOUT_KEEPING and graph_start:
                reorders.append(size)
                plain = False
            elif r.kind in LAYOUT_KEEPING or r.fusable:
                pass
            elif not plain:  # a plain-only op (norm, element-wise, linear) on a blocked tensor
                reorders.append(size)
                plain = True
            records.append(r)
            size = r.out_elems or size
        out.append(records)
    if not plain:
        reorders.append(size)
    return out, reorders
