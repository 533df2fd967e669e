"""A cut network's graph runs (ONNX Runtime sessions): two per stretch, the final one too."""
from __future__ import annotations

from dataclasses import replace

import pytest

from dse.cost.calibrate import write_profile
from dse.cost.latency import predict
from dse.cost.op_trace import LayerRecord, NetRecords
from dse.cost.profiles import Device, OpParams, PowerMode, Profile, Runtime, read_profile


def _profile(graph_run_us: float) -> Profile:
    device = Device("cpu", 1000.0, {"fp32": 1.0}, 1.0, {"d": PowerMode("d", 1.0, 1000.0)}, "d")
    ops = {k: OpParams(overhead_us=10.0, compute_eff=1.0, memory_eff=1.0)
           for k in ("conv", "dwconv", "linear", "norm", "elementwise", "pool", "reduce", "view")}
    rt = Runtime("ort", "", "fp32", ops, fusion=True, decision_overhead_us=5.0,
                 inference_overhead_us=3.0, graph_run_overhead_us=graph_run_us)
    return Profile("p", "", device, {"ort": rt}, "ort")


def test_two_graph_runs_per_stretch_final_included():
    # a kernel with no MACs and no bytes costs its overhead only: 10 us
    k = LayerRecord(name="k", kind="elementwise")
    net = NetRecords(blocks=((k,), (k,)), head=(k,), branches=((k,),), exit_blocks=(0,))
    base = predict(net, _profile(0.0))
    runs = predict(net, _profile(7.0))
    # exit 0: 3 + (block 10 + branch 10) + decision 5 = 28 us; + 2 runs = 42 us
    assert base.exit_ms[0] == pytest.approx(0.028)
    assert runs.exit_ms[0] == pytest.approx(0.042)
    # final: 28 + block 10 + head 10 = 48 us; + 4 runs (segment and head twice) = 76 us
    assert base.exit_ms[1] == pytest.approx(0.048)
    assert runs.exit_ms[1] == pytest.approx(0.076)


def test_graph_runs_default_to_zero_and_round_trip_through_yaml(tmp_path):
    assert Runtime("r", "", "fp32", {}).graph_run_overhead_us == 0.0
    profile = _profile(7.5)
    back = read_profile(write_profile(profile, tmp_path / "p.yaml"))
    assert back.runtime().graph_run_overhead_us == 7.5
    plain = read_profile(write_profile(replace(profile, runtimes={
        "ort": replace(profile.runtime(), graph_run_overhead_us=0.0)}), tmp_path / "q.yaml"))
    assert plain.runtime().graph_run_overhead_us == 0.0
    assert "graph_run_overhead_us" not in (tmp_path / "q.yaml").read_text()
