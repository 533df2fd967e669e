"""What a single op costs inside an ONNX Runtime graph: the differential of one-op and two-op
graphs (:func:`dse.export.ort_calibrate.in_network_seconds`) and the chains it is timed on
(:func:`dse.export.ort_bench.chain_runner`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dse.cost.op_trace import LayerRecord
from dse.export.ort_bench import chain_runner, profile_graph, read_profile
from dse.export.ort_calibrate import downsamples, fit_reorders, in_network_seconds


def test_chain_difference_cancels_the_per_run_and_edge_costs():
    # a graph of k ops costs a + k * b: a = 30 us (run + edges), per-op b = 12 us and 4 us
    a, graph_run = 30e-6, 8e-6
    single = [a + 12e-6, a + 4e-6]
    double = [a + 2 * 12e-6, a + 2 * 4e-6]
    assert in_network_seconds(single, double, graph_run) == pytest.approx([12e-6, 4e-6])


def test_unchainable_op_keeps_single_minus_graph_run_and_results_are_floored():
    graph_run = 10e-6
    single = [50e-6, 40e-6, 20e-6]
    double = [None, 39e-6, None]  # op 1: the difference is negative (noise on a tiny op)
    out = in_network_seconds(single, double, graph_run)
    assert out == pytest.approx([40e-6, 0.05 * 40e-6, 10e-6])


def test_chain_runner_runs_the_op_twice_with_its_own_weights():
    torch.manual_seed(0)
    w = torch.randn(4, 4, 3, 3)
    x = torch.randn(1, 4, 6, 6)
    f = lambda z, w=w: F.conv2d(z, w, None, 1, 1)  # noqa: E731
    call = chain_runner(f, x, 2, threads=1)
    got = call()[0]
    # link n reads its own copy of the weights, times 1 - 1e-3 n (distinct initializers)
    want = F.conv2d(F.conv2d(x, w, None, 1, 1), 0.999 * w, None, 1, 1).numpy()
    assert got.shape == want.shape
    assert got == pytest.approx(want, rel=1e-4, abs=1e-3)


def test_chain_runner_refuses_an_op_that_changes_the_shape():
    w = torch.randn(8, 4, 3, 3)
    strided = lambda z, w=w: F.conv2d(z, w, None, 2, 1)  # noqa: E731
    assert chain_runner(strided, torch.randn(1, 4, 6, 6), 2, threads=1) is None


def test_an_op_with_a_profiled_share_costs_that_share_of_its_one_op_graph():
    graph_run = 10e-6
    single, double = [50e-6, 50e-6, 30e-6], [None, None, 40e-6]
    shares = [0.4, None, 0.9]  # a chain wins over a share; no share: single - graph_run
    assert in_network_seconds(single, double, graph_run, shares) == pytest.approx(
        [20e-6, 40e-6, 10e-6])


def _event(name, dur, op=None):
    if op is None:
        return {"cat": "Session", "name": name, "dur": dur}
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": {"op_name": op}}


def test_read_profile_gives_the_op_and_each_reorder_as_shares_of_a_run():
    # two runs of 100 us: the conv 55 + 65 us, a 1024-element input reorder 20 + 20 us
    def reorder(dur):
        return {"cat": "Node", "name": "reorder_in_kernel_time", "dur": dur,
                "args": {"op_name": "ReorderInput", "output_size": "4096"}}
    events = [_event("model_run", 100), _event("model_run", 100),
              _event("conv_nchwc", 55, "Conv"), _event("conv_nchwc", 65, "Conv"),
              reorder(20), reorder(20),
              {"cat": "Session", "name": "session_initialization", "dur": 5000}]
    got = read_profile(events)
    assert got.share == pytest.approx(0.6)
    assert got.reorders == (pytest.approx((1024, 0.2)),)
    with pytest.raises(ValueError):
        read_profile(events[2:])


def test_fit_reorders_recovers_a_fixed_and_a_per_element_cost():
    # reorders cost 3 us + 0.25 us per 1000 elements
    samples = [(n, (3.0 + 0.25 * n / 1e3) * 1e-6) for n in (1000, 16_000, 200_000, 800_000)]
    assert fit_reorders(samples) == pytest.approx((3.0, 0.25), rel=1e-6)
    assert fit_reorders(samples[:1]) == (0.0, 0.0)  # one size: no fit, the layout plan stays off
    assert fit_reorders([]) == (0.0, 0.0)


def _conv(stride, groups=1):
    kind = "dwconv" if groups > 1 else "conv"
    return LayerRecord("conv2d", kind, macs=1, in_elems=1, out_elems=1, stride=stride)


def test_downsampling_ops_are_the_pools_reductions_and_strided_dense_convolutions():
    assert downsamples("pool", []) and downsamples("reduce", [])
    for kind in ("conv", "conv_gemm", "conv_gemm_strided"):
        assert downsamples(kind, [_conv(2)]) and not downsamples(kind, [_conv(1)])
    # depthwise convolutions keep their one-op graph's edges (see ort_calibrate's docstring)
    assert not downsamples("dwconv", [_conv(2, groups=8)])
    assert not downsamples("linear", []) and not downsamples("elementwise", [])


def test_profile_of_a_strided_convolution(tmp_path):
    torch.manual_seed(0)
    w = torch.randn(32, 16, 3, 3)
    got = profile_graph(lambda z, w=w: F.conv2d(z, w, None, 2, 1), torch.randn(1, 16, 32, 32), 1,
                        tmp_path)
    assert 0.0 < got.share < 1.0
    assert all(n > 0 and 0.0 < share < 1.0 for n, share in got.reorders)
    assert not list(tmp_path.iterdir())  # the profile file is removed


def test_input_reordered_spots_the_input_or_its_padded_copy():
    from dse.export.ort_bench import GraphProfile, input_reordered

    out_only = GraphProfile(0.5, ((16384, 0.1),))
    assert not input_reordered(out_only, 2048)
    assert input_reordered(GraphProfile(0.5, ((2048, 0.1), (16384, 0.1))), 2048)
    assert input_reordered(GraphProfile(0.5, ((4096, 0.1),)), 3072)  # 12 channels padded to 16


def test_layout_block_is_where_a_convolution_starts_reordering_its_input(tmp_path):
    """The block observed here: a dense convolution with that many input channels reorders its
    plain input, one with one channel fewer reads it directly (MLAS: 16 with AVX-512, 8 with
    AVX2)."""
    from dse.export.ort_bench import BLOCK_PROBES, input_reordered, layout_block

    block = layout_block(1, tmp_path)
    assert block in BLOCK_PROBES
    for cin, reordered in ((block - 1, False), (block, True)):
        x = torch.randn(1, cin, 16, 16)
        w = torch.randn(64, cin, 3, 3)
        got = profile_graph(lambda z, w=w: F.conv2d(z, w, None, 1, 1), x, 1, tmp_path)
        assert input_reordered(got, x.numel()) == reordered, (cin, got.reorders)
