"""Per-layer records traced from torch modules (dse/cost/op_trace.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dse.cost.op_trace import NetRecords, classify, trace, trace_branch, trace_call, trace_multiexit, with_exits


class Block(nn.Module):
    """conv-bn (modules), functional relu, residual '+', then flatten + pool + linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))
        y = y + x
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def test_trace_sees_functional_ops_and_counts_by_hand():
    records, out = trace(Block().eval(), torch.randn(1, 4, 5, 5))
    assert out.shape == (1, 3)
    assert [(r.name, r.kind) for r in records] == [
        ("conv2d", "conv_gemm"), ("batch_norm", "norm"), ("relu", "elementwise"),
        ("add", "elementwise"), ("adaptive_avg_pool2d", "reduce"), ("flatten", "view"),
        ("linear", "linear")]
    conv, bn, relu, add, gap, flat, fc = records
    assert conv.macs == 5 * 5 * 4 * 4 * 9          # out pixels x cout x cin x 3x3
    assert conv.gemm == (25, 4, 36)
    # a small batch-1 conv runs as im2col + GEMM: the 25 x 36 unfolded input is written and read
    assert (conv.in_elems, conv.weight_elems, conv.out_elems) == (100 + 2 * 25 * 36, 144, 100)
    assert bn.weight_elems == 4 * 4                  # running mean/var, weight, bias
    assert fc.macs == 12 and fc.weight_elems == 15 and fc.gemm == (1, 3, 4)
    assert add.in_elems == 200 and add.out_elems == 100
    assert (flat.in_elems, flat.out_elems) == (0, 0)  # a view moves no data
    # fusable: consumes the previous op's output and can be its epilogue
    assert [r.fusable for r in records] == [False, True, True, True, False, True, False]
    # module calls: Block + conv before conv2d, bn before batch_norm, fc before linear
    assert [r.calls for r in records] == [2, 1, 0, 0, 0, 0, 1]


def test_conv_kind_follows_the_backend_pytorch_picks():
    """Eager PyTorch runs small batch-1 convs by im2col + GEMM (Slow2d), big ones by oneDNN."""
    small, _ = trace(nn.Conv2d(16, 16, 3, padding=1), torch.randn(1, 16, 8, 8))
    big, _ = trace(nn.Conv2d(64, 64, 3, padding=1), torch.randn(1, 64, 56, 56))
    backend = torch._C._select_conv_backend
    x, w = torch.randn(1, 64, 56, 56), torch.randn(64, 64, 3, 3)
    expected = "conv_gemm" if "Slow" in str(backend(x, w, None, [1, 1], [1, 1], [1, 1], False,
                                                      [0, 0], 1, None)) else "conv"
    assert big[0].kind == expected
    assert small[0].kind in ("conv", "conv_gemm")


def test_depthwise_and_pooling_records():
    x = torch.randn(1, 8, 6, 6)
    w = torch.randn(8, 1, 3, 3)
    dw, mp = trace_call(lambda: F.conv2d(x, w, None, 1, 1, 1, 8), [w]) + trace_call(
        lambda: F.max_pool2d(x, 3, 2, 1))
    assert dw.kind == "dwconv" and dw.macs == 36 * 8 * 9 and dw.gemm == (36, 1, 9)
    assert mp.kind == "pool" and mp.macs == 3 * 3 * 8 * 9  # window visits
    assert classify("mean", (x,), {}) == "reduce"


def test_trace_multiexit_groups_blocks_head_and_branches():
    blocks = [nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()) for _ in range(3)]
    blocks[1][0] = nn.Conv2d(2, 2, 3, padding=1)
    blocks[2][0] = nn.Conv2d(2, 2, 3, padding=1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(blocks)
            self.head = nn.Sequential(nn.Flatten(1), nn.Linear(2 * 16, 5))

    branch = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(2, 5))
    net = trace_multiexit(Net(), (1, 4, 4), [1], [branch])
    assert len(net.blocks) == 3 and len(net.branches) == 1 and net.exit_blocks == (1,)
    assert net.block_macs() == [16 * 2 * 9, 16 * 2 * 18, 16 * 2 * 18]
    assert [r.kind for r in net.head] == ["view", "linear"]
    assert [r.kind for r in net.branches[0]] == ["reduce", "view", "linear"]
    again = with_exits(net, [0], [trace_branch(branch, (2, 4, 4))])
    assert again.exit_blocks == (0,) and again.blocks == net.blocks
    assert net.input_elems == again.input_elems == 16  # the input's size, for layout plans
    assert trace_multiexit(Net(), (1, 4, 4), batch=3).input_elems == 48


def test_batch_scales_work():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    one, _ = trace(conv, torch.randn(1, 3, 8, 8))
    four, _ = trace(conv, torch.randn(4, 3, 8, 8))
    assert four[0].macs == 4 * one[0].macs and four[0].weight_elems == one[0].weight_elems


def test_net_records_reject_inconsistent_exits():
    block = ()
    with pytest.raises(ValueError, match="branches for"):
        NetRecords(blocks=(block, block), head=(), branches=((),), exit_blocks=())
    with pytest.raises(ValueError, match="not an attach point"):
        NetRecords(blocks=(block, block), head=(), branches=((),), exit_blocks=(1,))


def test_pad_is_its_own_kind_with_counted_elements():
    """Option-A shortcut: a strided slice (a view) then F.pad from 2 to 6 channels."""
    x = torch.randn(1, 2, 4, 4)
    records = trace_call(lambda: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2)))
    assert [(r.name, r.kind) for r in records] == [("__getitem__", "view"), ("pad", "pad")]
    pad = records[1]
    assert (pad.in_elems, pad.out_elems) == (2 * 2 * 2, 6 * 2 * 2)  # reads 8, writes 24
    assert classify("pad", (x, (1, 1)), {}) == "pad"


def test_trace_classifies_convolutions_for_the_runtimes_thread_count():
    """Eager PyTorch runs a 1x1 convolution by im2col + GEMM single-threaded and by oneDNN
    multi-threaded; a trace priced for a one-thread runtime must say so whatever the process's
    own thread count, and leave that count as it was."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 256, 1, bias=False).eval()
    x = torch.randn(1, 64, 56, 56)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one = trace(conv, x, threads=1)[0][0].kind
        assert torch.get_num_threads() == 2
        two = trace(conv, x, threads=2)[0][0].kind
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert trace(conv, x, threads=1)[0][0].kind == one
        assert trace(conv, x, threads=2)[0][0].kind == two and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert one == "conv_gemm"
    assert two == "conv"


def test_convolutions_record_their_stride():
    x = torch.randn(1, 8, 16, 16)
    w = torch.randn(16, 8, 3, 3)
    assert trace_call(lambda: F.conv2d(x, w, None, 2, 1), [w])[0].stride == 2
    assert trace_call(lambda: F.conv2d(x, w, None, (1, 2), 1), [w])[0].stride == 2
    assert trace_call(lambda: F.conv2d(x, w, None, stride=1, padding=1), [w])[0].stride == 1
    assert trace_call(lambda: F.relu(x))[0].stride == 1
