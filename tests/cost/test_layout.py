"""Reorders and unfused adds of a runtime with a blocked convolution layout (dse/cost/layout.py,
dse/cost/latency.py), on hand-built records of the networks ONNX Runtime's profiler was read on."""
from __future__ import annotations

from dataclasses import replace

import pytest

from dse.cost.latency import predict
from dse.cost.layout import plan
from dse.cost.op_trace import OP_KINDS, LayerRecord, NetRecords
from dse.cost.profiles import Device, OpParams, PowerMode, Profile, Runtime


def conv(cin: int, cout: int, hw: int, k: int = 3, stride: int = 1,
         kind: str = "conv") -> LayerRecord:
    out_hw = hw // stride
    return LayerRecord("conv2d", kind, macs=cin * cout * k * k * out_hw ** 2,
                       in_elems=cin * hw * hw, weight_elems=cin * cout * k * k,
                       out_elems=cout * out_hw ** 2, gemm=(out_hw ** 2, cout, cin * k * k),
                       kernel_area=k * k, stride=stride)


def bn(n: int, fusable: bool = True) -> LayerRecord:
    return LayerRecord("batch_norm", "norm", in_elems=n, out_elems=n, fusable=fusable)


def relu(n: int) -> LayerRecord:
    return LayerRecord("relu", "elementwise", in_elems=n, out_elems=n, fusable=True)


def add(n: int, fusable: bool = True) -> LayerRecord:
    return LayerRecord("add", "elementwise", in_elems=2 * n, out_elems=n, fusable=fusable)


def identity_block(c: int, hw: int) -> list[LayerRecord]:
    n = c * hw * hw
    return [conv(c, c, hw), bn(n), relu(n), conv(c, c, hw), bn(n), add(n), relu(n)]


def pad_block(c: int, hw: int) -> list[LayerRecord]:
    """A CIFAR ResNet stage transition: option-A shortcut (subsample, zero channels)."""
    n = 2 * c * (hw // 2) ** 2
    return [conv(c, 2 * c, hw, stride=2), bn(n), relu(n), conv(2 * c, 2 * c, hw // 2), bn(n),
            LayerRecord("__getitem__", "view"),
            LayerRecord("pad", "pad", in_elems=n // 2, out_elems=n), add(n, fusable=False), relu(n)]


def projection_block(c: int, hw: int) -> list[LayerRecord]:
    n = 2 * c * (hw // 2) ** 2
    return [conv(c, 2 * c, hw, stride=2), bn(n), relu(n), conv(2 * c, 2 * c, hw // 2), bn(n),
            conv(c, 2 * c, hw, k=1, stride=2), bn(n), add(n), relu(n)]


def stem(hw: int) -> list[LayerRecord]:
    n = 16 * hw * hw
    return [conv(3, 16, hw), bn(n), relu(n)]


def adds(blocks) -> list[bool]:
    return [r.fusable for b in blocks for r in b if r.name == "add"]


def test_a_whole_resnet_graph_reorders_only_its_output():
    """ResNet-18 as one graph: the stem reads the 3-channel image directly, every block's
    shortcut is blocked, so every add fuses and only the output is reordered."""
    blocks = [stem(32), identity_block(16, 32), projection_block(16, 32), identity_block(32, 16)]
    planned, reorders = plan(blocks, 3 * 32 * 32)
    assert reorders == [32 * 16 * 16]
    assert adds(planned) == [True, True, True]


def test_after_a_pad_shortcut_every_add_runs_plain_between_reorders():
    """A CIFAR ResNet run as one graph (the profiler on resnet20): the pad reads the blocked
    stream (a reorder), its add gets the conv output reordered; the next block's first conv
    reorders the plain stream and its identity add is plain again, and so on."""
    blocks = [stem(32), pad_block(16, 32), identity_block(32, 16), identity_block(32, 16)]
    planned, reorders = plan(blocks, 3 * 32 * 32)
    n_in, n = 16 * 32 * 32, 32 * 16 * 16
    assert reorders == [n_in, n, n, n, n, n]
    assert adds(planned) == [False, False, False]
    assert planned[2][5].fusable is False and planned[2][6].fusable  # the ReLU fuses into the add


def test_a_cut_segment_starting_at_an_identity_block_runs_its_adds_plain():
    """A segment graph's input arrives plain: the first conv reorders it and the identity add's
    shortcut is that plain input; the segment ends plain (no output reorder)."""
    planned, reorders = plan([identity_block(16, 32), identity_block(16, 32)], 16 * 32 * 32)
    n = 16 * 32 * 32
    assert reorders == [n, n, n, n]
    assert adds(planned) == [False, False]


def test_a_projection_shortcut_on_plain_input_shares_the_input_reorder_and_fuses():
    planned, reorders = plan([projection_block(16, 32)], 16 * 32 * 32)
    assert reorders == [16 * 32 * 32, 32 * 16 * 16]  # input once, output at the end
    assert adds(planned) == [True]


def test_exit_branches_as_their_own_graphs():
    n = 32 * 16 * 16
    gap = LayerRecord("adaptive_avg_pool2d", "reduce", in_elems=n, out_elems=32)
    fc = LayerRecord("linear", "linear", macs=320, in_elems=32, weight_elems=320, out_elems=10,
                     gemm=(1, 10, 32))
    # bnpool: a norm on the plain input, then pooling and the classifier: nothing to reorder
    assert plan([[bn(n, fusable=False), relu(n), gap, fc]], n)[1] == []
    # pool (and the final head): pooling first runs blocked, the classifier reads plain
    assert plan([[gap, fc]], n)[1] == [n, 32]
    # convx: the conv reorders the input, the classifier reads the pooled output plain
    assert plan([[conv(32, 32, 16), bn(n), relu(n), gap, fc]], n)[1] == [n, 32]
    # a depthwise conv reorders even a few channels; a dense one below 16 reads plain input
    dw = replace(conv(8, 8, 16, kind="dwconv"), gemm=(256, 1, 9))
    assert plan([[dw]], 8 * 256)[1] == [8 * 256, 8 * 256]
    assert plan([[conv(8, 32, 16)]], 8 * 256)[1] == [32 * 256]


DEVICE = Device(kind="cpu", clock_mhz=1000.0, peak_gflops={"fp32": 100.0},
                memory_bandwidth_gbs=10.0,
                power_modes={"default": PowerMode("default", 10.0, 1000.0)},
                default_power_mode="default")
OPS = {k: OpParams(overhead_us=1.0, compute_eff=0.5, memory_eff=0.5) for k in OP_KINDS}
RT = Runtime(name="ort", description="", dtype="fp32", ops=OPS, fusion=True,
             decision_overhead_us=10.0, graph_run_overhead_us=5.0)


def _profile(**layout) -> Profile:
    return Profile(name="toy", description="", device=DEVICE,
                   runtimes={"ort": replace(RT, **layout)}, default_runtime="ort")


@pytest.mark.parametrize("block", [4, 8, 16, 32])
def test_a_dense_convolution_reads_plain_input_below_the_channel_block(block):
    """A graph starting with a dense convolution: one input channel short of the block, it
    reads the plain input directly (only the output is reordered); at the block, and at twice
    it, the input is reordered too. Depthwise convolutions always read blocked input."""
    for cin, reordered in ((block - 1, False), (block, True), (2 * block, True)):
        first = conv(cin, 32, 16)
        _, reorders = plan([[first]], first.in_elems, block)
        assert reorders == ([first.in_elems] if reordered else []) + [first.out_elems], (cin, block)
    dw = LayerRecord("conv2d", "dwconv", macs=9 * 4 * 256, in_elems=4 * 256, out_elems=4 * 256,
                     gemm=(256, 4, 9), kernel_area=9)
    assert plan([[dw]], dw.in_elems, block)[1] == [dw.in_elems, dw.out_elems]


def test_predict_prices_reorders_with_the_runtimes_channel_block():
    """A network cut after its 8-channel stem (an exit there): the next segment's graph starts
    with an 8-input-channel convolution, whose plain input it reorders with AVX2's block (8)
    and reads directly with AVX-512's (16): one reorder of 8x32x32 elements apart, on the exits
    past the cut only."""
    n = 8 * 32 * 32
    pool_head = (LayerRecord("adaptive_avg_pool2d", "reduce", in_elems=n, out_elems=8),
                 LayerRecord("linear", "linear", macs=80, in_elems=8, weight_elems=80,
                             out_elems=10, gemm=(1, 10, 8)))
    net = NetRecords(blocks=((conv(3, 8, 32),), (conv(8, 16, 32),)), head=(),
                     branches=(pool_head,), exit_blocks=(0,))
    layout = dict(blocked_layout=True, reorder_us=2.0, reorder_us_per_kelem=0.5)
    avx2 = predict(net, _profile(layout_block=8, **layout))
    avx512 = predict(net, _profile(layout_block=16, **layout))
    assert avx2.exit_ms[0] == pytest.approx(avx512.exit_ms[0])  # the cut's first graph: same
    assert avx2.exit_ms[1] - avx512.exit_ms[1] == pytest.approx((2.0 + 0.5 * n / 1e3) / 1e3)


def test_predict_prices_the_network_inputs_reorder_by_its_size():
    """A network whose first convolution reads 32 channels (feature input, not an image):
    its first graph reorders the plain 32x16x16 input, fixed cost plus per-element cost of
    the input's size; the same network without a recorded input size pays the fixed cost."""
    n = 32 * 16 * 16
    net = NetRecords(blocks=((conv(32, 32, 16),), (conv(32, 32, 16),)), head=(),
                     input_elems=n)
    layout = _profile(blocked_layout=True, reorder_us=2.0, reorder_us_per_kelem=0.5)
    sized, unsized = predict(net, layout), predict(replace(net, input_elems=0), layout)
    assert sized.exit_ms[-1] - unsized.exit_ms[-1] == pytest.approx(0.5 * n / 1e3 / 1e3)
    # an image input (3 channels) is read plain: its size costs nothing
    image = NetRecords(blocks=((conv(3, 32, 16),), (conv(32, 32, 16),)), head=(),
                       input_elems=3 * 16 * 16)
    assert predict(image, layout).exit_ms == predict(replace(image, input_elems=0),
                                                     layout).exit_ms


def test_predict_charges_each_graphs_reorders():
    """A stem and an identity block in one segment, then the head: with the layout on, the
    segment reorders its 16x32x32 output once (2 us + 0.5 us per 1000 elements) and the head
    graph reorders it back for its pooling and the pooled 16 values for the classifier."""
    n = 16 * 32 * 32
    head = (LayerRecord("adaptive_avg_pool2d", "reduce", in_elems=n, out_elems=16),
            LayerRecord("linear", "linear", macs=160, in_elems=16, weight_elems=160, out_elems=10,
                        gemm=(1, 10, 16)))
    net = NetRecords(blocks=(tuple(stem(32)), tuple(identity_block(16, 32))), head=head)
    off = predict(net, _profile())
    on = predict(net, _profile(blocked_layout=True, reorder_us=2.0, reorder_us_per_kelem=0.5))
    extra_us = 2 * (2.0 + 0.5 * n / 1e3) + (2.0 + 0.5 * 16 / 1e3)
    assert on.exit_ms[-1] - off.exit_ms[-1] == pytest.approx(extra_us / 1e3)
    assert on.backbone_ms - off.backbone_ms == pytest.approx(extra_us / 1e3)
    assert on.block_ms == off.block_ms  # blocks on their own stay as the kernels price them


def test_layout_fields_round_trip_and_bad_values_are_one_line(tmp_path):
    import yaml

    from dse.cost.profiles import profile_to_dict, read_profile
    from tests.cost.test_profiles import _bad

    p = _profile(blocked_layout=True, reorder_us=2.5, reorder_us_per_kelem=0.3, layout_block=8)
    out = tmp_path / "p.yaml"
    out.write_text(yaml.safe_dump(profile_to_dict(p), sort_keys=False))
    rt = read_profile(out).runtime("ort")
    assert (rt.blocked_layout, rt.reorder_us, rt.reorder_us_per_kelem) == (True, 2.5, 0.3)
    assert rt.layout_block == 8
    assert rt.fusion and rt.graph_run_overhead_us == 5.0  # the rest as written
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"].update(reorder_us=-1))
    assert "runtimes.tensorrt-fp16.reorder_us must be >= 0, got -1" in msg
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"].update(blocked_layout="yes"))
    assert "runtimes.tensorrt-fp16.blocked_layout" in msg
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"].update(layout_block=0))
    assert "runtimes.tensorrt-fp16.layout_block must be an integer >= 1, got 0" in msg
    written = profile_to_dict(_profile(blocked_layout=True))["runtimes"]["ort"]
    assert written["layout_block"] == 16  # the default, written beside the layout it shapes
