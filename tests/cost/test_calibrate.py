"""Calibration: the fit recovers a known runtime; micro-benchmarks and timing (dse/cost/calibrate.py)."""
from __future__ import annotations

import dataclasses
import random
import re
import time

import pytest
import torch

from dse.cost.calibrate import (CalibrationSettings, Measurements, fit_profile, run_benchmarks,
                                write_profile)
from dse.cost.harness import DEFAULT_REFERENCE, LEGACY_REFERENCE, REFERENCES
from dse.cost.latency import kernel_time_us, kernels
from dse.cost.op_trace import OP_KINDS, LayerRecord
from dse.cost.microbench import measure, reference_kernel, reference_op, timer
from dse.cost.network_bench import forcing_thresholds
from dse.cost.profiles import Device, OpParams, PowerMode, Runtime, profile_to_dict, read_profile
from dse.cost.validate import reference_name
from dse.errors import ConfigError, UnknownNameError

TRUE_OPS = {
    "conv": OpParams(12.0, 0.6, 0.4, m_half=30.0, n_half=10.0, k_half=8.0, overlap=0.6),
    "dwconv": OpParams(20.0, 0.1, 0.3, m_half=20.0),
    "linear": OpParams(4.0, 0.3, 0.5),
    "norm": OpParams(6.0, 1.0, 0.3),
    "elementwise": OpParams(1.5, 1.0, 0.6),
    "pool": OpParams(3.0, 0.02, 0.3, overlap=0.0),
    "reduce": OpParams(4.0, 1.0, 0.4),
    "view": OpParams(0.8, 1.0, 1.0),
}
DEVICE = Device("cpu", 1000.0, {"fp32": 100.0}, 100.0, {"d": PowerMode("d", 1.0, 1000.0)}, "d")
TRUE = Runtime("host", "", "fp32", TRUE_OPS, call_overhead_us=1.0)


def _synthetic_cases(rng: random.Random) -> list[tuple[str, tuple[LayerRecord, ...], float]]:
    """Single-op cases over a grid of shapes, timed by the true runtime (1 % noise)."""
    cases = []

    def add(kind, **fields):
        rec = LayerRecord(kind, kind, **fields)
        t = sum(kernel_time_us(kernels([rec], False)[0], DEVICE, TRUE))
        cases.append((kind, (rec,), t * (1 + 0.01 * rng.uniform(-1, 1)) / 1e6))

    for cin in (3, 16, 64, 256):
        for cout in (16, 64, 256):
            for hw in (2, 8, 32):
                m, k = hw * hw, cin * 9
                add("conv", macs=m * cout * k, in_elems=cin * m, weight_elems=cout * k,
                    out_elems=cout * m, gemm=(m, cout, k))
    for c in (16, 96, 384):
        for hw in (4, 14, 56):
            m = hw * hw
            add("dwconv", macs=9 * c * m, in_elems=c * m, weight_elems=9 * c, out_elems=c * m,
                gemm=(m, 1, 9))
            add("norm", in_elems=c * m, weight_elems=4 * c, out_elems=c * m)
            add("elementwise", in_elems=c * m, out_elems=c * m)
            add("pool", macs=9 * c * m // 4, in_elems=c * m, out_elems=c * m // 4)
            add("pool", macs=c * m, in_elems=c * m, out_elems=c * m // 4)
            add("reduce", in_elems=c * m, out_elems=c)
    for cin, cout in ((16, 10), (512, 1000), (2048, 1000), (4096, 1024)):
        add("linear", macs=cin * cout, in_elems=cin, weight_elems=cin * cout + cout, out_elems=cout,
            gemm=(1, cout, cin))
    add("view")
    return cases


def test_fit_recovers_a_known_runtime():
    cases = _synthetic_cases(random.Random(0))
    m = Measurements(tuple(cases), peak_gflops=80.0, call_us=1.0, decision_us=15.0,
                     inference_us=7.0, threads=1)
    profile = fit_profile("synthetic", m, CalibrationSettings())
    rt = profile.runtime("host")
    assert profile.device.peak_gflops["fp32"] >= 80.0
    assert (rt.decision_overhead_us, rt.inference_overhead_us, rt.threads) == (15.0, 7.0, 1)
    errors = []
    for kind, records, t in cases:
        pred = sum(sum(kernel_time_us(k, profile.device, rt)) for k in kernels(list(records), False))
        errors.append(abs(pred / (t * 1e6) - 1))
    errors.sort()
    assert errors[int(0.9 * len(errors))] < 0.05, errors[-10:]


def test_fit_uses_composites_for_in_network_overheads():
    """Composites cost 3 us more per op than the loops say: stage 2 moves the overheads up."""
    cases = _synthetic_cases(random.Random(1))
    net = tuple(LayerRecord("relu", "elementwise", in_elems=10, out_elems=10, calls=1) for _ in range(20))
    t_loop = sum(sum(kernel_time_us(k, DEVICE, TRUE)) for k in kernels(list(net), False))
    cases.append(("composite", net, (t_loop + 20 * 3.0) / 1e6))
    m = Measurements(tuple(cases), 80.0, 1.0, 15.0, 7.0, 1)
    rt = fit_profile("synthetic", m).runtime()
    per_op = rt.ops["elementwise"].overhead_us + rt.call_overhead_us
    assert per_op == pytest.approx(TRUE_OPS["elementwise"].overhead_us + 1.0 + 3.0, rel=0.05)


def test_measure_interleaves_and_returns_medians():
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    out = measure(fns, rounds=3, target_s=1e-4)
    assert len(out) == 2 and all(t > 0 for t in out)
    assert set(calls) == {"a", "b"}


def test_timer_choice():
    assert timer("auto", 1) is time.thread_time
    assert timer("auto", 2) is time.perf_counter
    assert timer("wall", 1) is time.perf_counter
    with pytest.raises(ValueError):
        timer("sundial")


def test_forcing_thresholds():
    assert forcing_thresholds("maxprob", 3, 1) == [2.0, -1.0, 2.0]
    assert forcing_thresholds("entropy", 2, 2) == [-1.0, -1.0]


@pytest.mark.slow
def test_quick_calibration_runs_here():
    m = run_benchmarks(CalibrationSettings(quick=True, rounds=2, target_ms=1.0, threads=1))
    kinds = {k for k, _, _ in m.cases}
    assert set(OP_KINDS) <= kinds and "composite" in kinds
    profile = fit_profile("here", m)
    rt = profile.runtime()
    assert rt.decision_overhead_us > 0 and profile.device.peak_gflops["fp32"] > 0


def test_co_timed_items_convert_at_the_measurements_reference():
    """Items timed in a calibration's passes come back at the reference time the measurements
    were converted at (the run's median, at_run_reference), not the snapshot before the run,
    so a profile fitted to the measurements and the items' times are in one unit."""
    from dse.cost.calibrate import co_timed_share
    from dse.cost.harness import Timing

    timing = Timing([[[1.0]], [[2.0]]], "median", [[[0.1]], [[0.2]]], reference_s=0.1)
    m = Measurements(cases=(), peak_gflops=1.0, call_us=0.0, decision_us=0.0, inference_us=0.0,
                     threads=1, reference_us=150_000.0)  # converted at 0.15 s
    share = co_timed_share(timing, 1, m)
    assert share.seconds() == [pytest.approx(2.0 / 0.2 * 0.15)]
    assert co_timed_share(timing, 2, m) is None  # nothing after the benchmarks


def test_fit_moves_the_decision_cost_to_what_a_chain_pays():
    """Early-exit composites pay 20 us more per decision than the isolated measurement says."""
    from dse.cost.network_bench import DECISION, INFERENCE

    cases = _synthetic_cases(random.Random(2))
    op = LayerRecord("relu", "elementwise", in_elems=10, out_elems=10, calls=1)
    t_op = sum(sum(kernel_time_us(k, DEVICE, TRUE)) for k in kernels([op], False))
    for n_ops, n_dec in ((10, 0), (20, 1), (30, 3), (15, 2), (40, 0)):
        recs = (LayerRecord(INFERENCE, "call"), *[op] * n_ops, *[LayerRecord(DECISION, "call")] * n_dec)
        cases.append(("composite", recs, (7.0 + n_ops * t_op + n_dec * (15.0 + 20.0)) / 1e6))
    rt = fit_profile("synthetic", Measurements(tuple(cases), 80.0, 1.0, 15.0, 7.0, 1)).runtime()
    assert rt.decision_overhead_us == pytest.approx(35.0, rel=0.05)
    assert rt.call_overhead_us == pytest.approx(1.0, abs=0.1)


def test_early_exit_bench_records_follow_the_path():
    import torch
    from torch import nn

    from dse.cost.network_bench import DECISION, INFERENCE, early_exit_bench
    from dse.models.backbones import Backbone
    from dse.models.multiexit import MultiExitNet

    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.conf = nn.Linear(4, 3), nn.Linear(4, 1)

        def forward(self, x):
            return self.fc(x), torch.sigmoid(self.conf(x)).squeeze(1)

    blocks = [nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(4)]
    net = MultiExitNet(Backbone(blocks, nn.Linear(4, 3)), [0, 2], [Branch(), Branch()]).eval()
    fn, records = early_exit_bench(net, (4,), "maxprob")
    names = [r.name for r in records]
    assert names[0] == INFERENCE and names.count(DECISION) == 2
    # block 0, branch 0 (2 linears + sigmoid + squeeze), decision, blocks 1-2, branch 1, decision
    assert names.index(DECISION) == 1 + 2 + 4
    assert sum(r.kind == "linear" for r in records) == 4 + 4 + 1
    with torch.no_grad():
        logits, index = fn()
    assert int(index[0]) == 2  # forced through every exit to the final one


def test_stage_two_ignores_an_outlier_composite():
    """One composite with no in-network extra at all (2 us per op in the six others) must not
    drag the per-kernel extra down: least squares on relative error would give about 1.2 us."""
    cases = _synthetic_cases(random.Random(3))
    op = LayerRecord("relu", "elementwise", in_elems=10, out_elems=10, calls=1)
    t_op = sum(sum(kernel_time_us(k, DEVICE, TRUE)) for k in kernels([op], False))
    for n_ops in (10, 20, 30, 40, 50, 60):
        cases.append(("composite", (op,) * n_ops, n_ops * (t_op + 2.0) / 1e6))
    cases.append(("composite", (op,) * 25, 25 * t_op / 1e6))
    rt = fit_profile("synthetic", Measurements(tuple(cases), 80.0, 1.0, 15.0, 7.0, 1)).runtime()
    extra = rt.ops["elementwise"].overhead_us + rt.call_overhead_us - (TRUE_OPS["elementwise"].overhead_us + 1.0)
    assert extra == pytest.approx(2.0, abs=0.3)
    assert rt.call_overhead_us == 1.0  # the measured call cost; the extra is per kernel


def test_stage_two_fits_library_convolutions_apart():
    """Composites where a depthwise conv (a oneDNN primitive) pays 40 us more than in its loop
    and an element-wise op 3 us more: stage 2 gives each its own extra (one shared extra would
    land in between and overpredict the nets without depthwise convs)."""
    from dse.cost.calibrate import LIBRARY_KINDS

    assert set(LIBRARY_KINDS) == {"conv", "dwconv"}
    cases = _synthetic_cases(random.Random(4))
    ew = LayerRecord("relu", "elementwise", in_elems=10, out_elems=10, calls=1)
    dw = LayerRecord("conv2d", "dwconv", macs=9 * 64, in_elems=64, weight_elems=9 * 16,
                     out_elems=64, gemm=(4, 1, 9), calls=1)
    t_ew, t_dw = (sum(sum(kernel_time_us(k, DEVICE, TRUE)) for k in kernels([r], False))
                  for r in (ew, dw))
    for n_ew, n_dw in ((20, 0), (40, 0), (10, 3), (30, 6), (20, 10), (60, 2)):
        recs = (ew,) * n_ew + (dw,) * n_dw
        cases.append(("composite", recs, (n_ew * (t_ew + 3.0) + n_dw * (t_dw + 40.0)) / 1e6))
    rt = fit_profile("synthetic", Measurements(tuple(cases), 80.0, 1.0, 15.0, 7.0, 1)).runtime()
    loop = fit_profile("synthetic", Measurements(tuple(c for c in cases if c[0] != "composite"),
                                                 80.0, 1.0, 15.0, 7.0, 1)).runtime()
    extra = {k: rt.ops[k].overhead_us - loop.ops[k].overhead_us for k in rt.ops}
    assert extra["elementwise"] == pytest.approx(3.0, abs=0.2)
    assert extra["dwconv"] == pytest.approx(40.0, abs=1.0)
    assert extra["conv"] == pytest.approx(extra["dwconv"])  # one library group
    assert extra["norm"] == pytest.approx(extra["elementwise"])
    assert extra["view"] == 0.0


def test_the_reference_time_travels_with_the_profile(tmp_path):
    """Validation converts reference units at the time calibration recorded: it must survive
    the YAML round trip."""
    m = Measurements(tuple(_synthetic_cases(random.Random(2))), 80.0, 1.0, 15.0, 7.0, 1,
                     reference_us=123.5)
    rt = read_profile(write_profile(fit_profile("here", m), tmp_path / "here.yaml")).runtime()
    assert rt.reference_us == 123.5
    bad = (tmp_path / "here.yaml").read_text().replace("reference_us: 123.5", "reference_us: -1")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(Exception, match="reference_us"):
        read_profile(tmp_path / "bad.yaml")


def test_the_reference_kernel_travels_with_the_profile_and_validation_uses_it(tmp_path):
    """A profile names the reference it was calibrated with; one calibrated before profiles
    named theirs (reference_us, no name) used the legacy 32-channel 16x16 kernel, and a
    validation brackets its samples with that same kernel, else the reference time means
    nothing."""
    m = Measurements(tuple(_synthetic_cases(random.Random(2))), 80.0, 1.0, 15.0, 7.0, 1,
                     reference_us=300.0)
    path = write_profile(fit_profile("here", m), tmp_path / "here.yaml")
    rt = read_profile(path).runtime()
    assert rt.reference == DEFAULT_REFERENCE and reference_name(rt) == DEFAULT_REFERENCE
    text = path.read_text()
    (tmp_path / "old.yaml").write_text(re.sub(r"\n *reference: .*", "", text))
    old = read_profile(tmp_path / "old.yaml").runtime()
    assert old.reference == LEGACY_REFERENCE and reference_name(old) == LEGACY_REFERENCE
    other = dataclasses.replace(m, reference="conv3x3-32c-32px")
    big = read_profile(write_profile(fit_profile("big", other), tmp_path / "big.yaml")).runtime()
    assert reference_name(big) == "conv3x3-32c-32px"  # validation brackets with the same one
    (tmp_path / "bad.yaml").write_text(text.replace(f"reference: {DEFAULT_REFERENCE}",
                                                    "reference: conv5x5"))
    with pytest.raises(ConfigError, match="reference must be one of conv3x3-32c-16px"):
        read_profile(tmp_path / "bad.yaml")
    # no reference time (a shipped profile, or calibrated with --no-reference): the default
    plain = fit_profile("plain", Measurements(tuple(_synthetic_cases(random.Random(2))), 80.0,
                                              1.0, 15.0, 7.0, 1)).runtime()
    assert plain.reference == "" and reference_name(plain) == DEFAULT_REFERENCE
    assert "reference" not in profile_to_dict(fit_profile("plain", Measurements(
        tuple(_synthetic_cases(random.Random(2))), 80.0, 1.0, 15.0, 7.0, 1)))["runtimes"]["host"]


def test_reference_kernels_by_name():
    for name, (channels, side) in REFERENCES.items():
        op, x = reference_op(name)
        assert tuple(x.shape) == (1, channels, side, side) and op(x).shape == x.shape
    with pytest.raises(UnknownNameError, match="unknown timing reference 'conv5x5'"):
        reference_op("conv5x5")


def test_measure_in_reference_units_converts_at_the_given_time():
    calls = []
    out = measure([lambda: calls.append("a")], rounds=3, target_s=1e-5,
                  reference=reference_kernel(), reference_s=1.0)
    # a no-op in units of a convolution, times 1 s: far below 1 s, far above 0
    assert 0.0 < out[0] < 0.5


def test_strided_im2col_convolutions_are_a_fit_group_of_their_own(tmp_path):
    """Single-threaded, eager PyTorch runs the small strided 3x3 convolutions of the grid by
    im2col + GEMM; they form the conv_gemm_strided group, which a fit turns into its own op
    parameters (written to and read back from the profile YAML)."""
    from dse.cost.calibrate import write_profile
    from dse.cost.microbench import op_specs
    from dse.device import set_threads

    before = torch.get_num_threads()
    try:
        set_threads(1)
        specs = op_specs(False)
    finally:
        torch.set_num_threads(before)
    strided = [r[0] for k, _, _, r in specs if k == "conv_gemm_strided"]
    assert len(strided) >= 4
    assert all(r.kind == "conv_gemm" and r.stride == 2 and r.kernel_area > 1 for r in strided)
    assert all(not (r[0].kind == "conv_gemm" and r[0].stride > 1 and r[0].kernel_area > 1)
               for k, _, _, r in specs if k != "conv_gemm_strided")
    # 1 GFLOP/s peak (2 FLOP per MAC); the strided ones reach a fifth of it and pay 3 us more
    cases = [(k, tuple(r), (3.0 + 2 * r[0].macs / 200.0) / 1e6 if k == "conv_gemm_strided"
              else (1.0 + 2 * r[0].macs / 1000.0) / 1e6) for k, _, _, r in specs]
    m = Measurements(tuple(cases), peak_gflops=1.0, call_us=0.5, decision_us=5.0,
                     inference_us=5.0, threads=1)
    profile = fit_profile("here", m)
    rt = profile.runtime()
    for k, recs, t in cases:  # the group's own parameters reproduce its times
        if k == "conv_gemm_strided":
            got = sum(sum(kernel_time_us(kk, profile.device, rt)) for kk in kernels(recs, False))
            assert got == pytest.approx(t * 1e6, rel=0.05)
    back = read_profile(write_profile(profile, tmp_path / "here.yaml")).runtime()
    assert dataclasses.astuple(back.ops["conv_gemm_strided"]) == pytest.approx(
        dataclasses.astuple(rt.ops["conv_gemm_strided"]), rel=1e-3)


def test_measurements_are_converted_at_the_runs_median_reference():
    """A snapshot of 142 us before the run and a median of 71 us over it: every time halves,
    the peak doubles, and the profile records 71 us; a snapshot within 1.2x of the median
    changes the level alike, without a log line."""
    from dse.cost.calibrate import at_run_reference

    rec = (LayerRecord("relu", "elementwise", in_elems=10, out_elems=10),)
    m = Measurements((("elementwise", rec, 4e-6),), peak_gflops=10.0, call_us=1.0,
                     decision_us=8.0, inference_us=6.0, threads=1, graph_run_us=2.0,
                     reference_us=142.0)
    lines = []
    got = at_run_reference(m, 71e-6, lines.append)
    assert got.cases[0][2] == pytest.approx(2e-6) and got.peak_gflops == pytest.approx(20.0)
    assert (got.call_us, got.decision_us, got.inference_us, got.graph_run_us) == pytest.approx(
        (0.5, 4.0, 3.0, 1.0))
    assert got.reference_us == pytest.approx(71.0) and "2.00x its run median" in lines[0]
    lines.clear()
    near = at_run_reference(m, 130e-6, lines.append)
    assert near.reference_us == pytest.approx(130.0) and not lines
    assert at_run_reference(m, None) is m  # no reference samples: as measured
