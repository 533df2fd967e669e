"""What a single op costs inside an ONNX Runtime graph: the differential of one-op and two-op
graphs (:func:`dse.export.ort_calibrate.in_network_seconds`) and the chains it is timed on
(:func:`dse.export.ort_bench.chain_runner`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dse.export.ort_bench import chain_runner
from dse.export.ort_calibrate import in_network_seconds


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
