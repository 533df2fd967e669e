"""Published-measurement fitting (dse/cost/published.py) and the model structure it relies on:
depthwise/memory-bound kernels, pointwise and Tensor Core rules, overhead-bound eager PyTorch,
power modes, the ``fitted_to`` rows of every shipped profile."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from click.testing import CliRunner

from dse.cli import cli
from dse.cost import published as pub
from dse.cost.latency import kernel_time_us, kernels, predict
from dse.cost.op_trace import OP_KINDS, LayerRecord, NetRecords
from dse.cost.profiles import (Device, OpParams, PowerMode, Profile, PublishedRow, Runtime,
                               error_line, list_profiles, load_profile)
from dse.errors import UnknownNameError

# 1000 GFLOPS = 1e6 FLOP/us; 100 GB/s = 1e5 B/us; a CPU clock for host costs.
DEVICE = Device(kind="gpu", clock_mhz=1000.0, peak_gflops={"fp32": 1000.0, "fp16": 2000.0},
                memory_bandwidth_gbs=100.0,
                power_modes={"MAXN": PowerMode("MAXN", 30.0, 1000.0, cpu_mhz=2000.0),
                             "15W": PowerMode("15W", 15.0, 400.0, cpu_mhz=1000.0)},
                default_power_mode="MAXN", cpu_clock_mhz=2000.0)
OPS = {k: OpParams(overhead_us=2.0, compute_eff=0.5, memory_eff=0.5) for k in OP_KINDS}
RT = Runtime(name="rt", description="", dtype="fp32", ops=OPS, decision_overhead_us=0.0,
             power_w=1.0)
PROFILE = Profile(name="toy", description="", device=DEVICE, runtimes={"rt": RT},
                  default_runtime="rt")


def conv(macs, cin, cout, area, kind="conv", in_elems=1000, w=1000, out=1000) -> LayerRecord:
    return LayerRecord("conv2d", kind, macs=macs, in_elems=in_elems, weight_elems=w,
                       out_elems=out, gemm=(100, cout, cin * area), kernel_area=area)


def test_depthwise_conv_is_memory_bound():
    # 3x3 depthwise over 64 x 56 x 56: 1.8 M MACs -> 3.6e6 FLOP at 1e6 x 0.5 = 7.2 us;
    # 2 x 200704 activations + 576 weights, fp32: 1.608 MB at 1e5 B/us x 0.5 = 32.16 us.
    n = 64 * 56 * 56
    dw = conv(n * 9, 1, 1, 9, kind="dwconv", in_elems=n, w=576, out=n)
    host, dev = kernel_time_us(kernels([dw], False)[0], DEVICE, RT)
    assert host == pytest.approx(2.0)
    assert dev == pytest.approx((2 * n + 576) * 4 / 5e4)


def test_depthwise_fit_scales_its_roofline():
    n = 64 * 56 * 56
    dw = kernels([conv(n * 9, 1, 1, 9, kind="dwconv", in_elems=n, w=576, out=n)], False)[0]
    _, dev = kernel_time_us(dw, DEVICE, replace(RT, fit={"dwconv": 0.5}))
    assert dev == pytest.approx((2 * n + 576) * 4 / 2.5e4)  # memory_eff 0.5 x 0.5


def test_pointwise_conv_uses_pwconv_params_when_the_runtime_has_them():
    pw = kernels([conv(1_000_000, 64, 64, 1)], False)[0]
    _, plain = kernel_time_us(pw, DEVICE, RT)
    rt = replace(RT, ops={**OPS, "pwconv": OpParams(overhead_us=2.0, compute_eff=0.25, memory_eff=0.5)})
    _, own = kernel_time_us(pw, DEVICE, rt)
    assert plain == pytest.approx(2e6 / 5e5)   # conv params: 4 us
    assert own == pytest.approx(2e6 / 2.5e5)   # pwconv params: 8 us
    _, k3 = kernel_time_us(kernels([conv(1_000_000, 64, 64, 9)], False)[0], DEVICE, rt)
    assert k3 == pytest.approx(4.0)            # a 3x3 conv keeps the conv params


def test_tensor_core_rule_slows_unaligned_channels():
    rt = replace(RT, tensor_core_align=8, unaligned_eff=0.25)
    _, aligned = kernel_time_us(kernels([conv(1_000_000, 64, 64, 9)], False)[0], DEVICE, rt)
    _, stem = kernel_time_us(kernels([conv(1_000_000, 3, 64, 49)], False)[0], DEVICE, rt)
    assert aligned == pytest.approx(4.0)
    assert stem == pytest.approx(16.0)         # cin = 3 is no multiple of 8: a quarter the rate


def test_eager_pytorch_on_a_slow_host_is_overhead_bound():
    # 40 small convs, each 20 us of host dispatch and 1 us on the GPU: an async runtime pays
    # max(sum host, sum device) = 40 x 20 us, not the device's 40 us.
    rt = replace(RT, async_launch=True,
                 ops={**OPS, "conv": OpParams(overhead_us=20.0, compute_eff=0.5, memory_eff=1.0)})
    prof = replace(PROFILE, runtimes={"rt": rt})
    records = tuple(conv(500_000, 64, 64, 9, in_elems=0, w=0, out=0) for _ in range(40))
    net = NetRecords(blocks=(records, ()), head=())
    assert predict(net, prof).backbone_ms == pytest.approx(40 * 20.0 / 1e3)
    # the fit's overhead multiplier scales exactly that host time
    prof2 = replace(prof, runtimes={"rt": replace(rt, fit={"overhead": 1.5})})
    assert predict(net, prof2).backbone_ms == pytest.approx(1.5 * 40 * 20.0 / 1e3)


def test_power_mode_scales_gpu_clock_and_host_cpu_clock():
    records = (conv(1_000_000, 64, 64, 9),)
    net = NetRecords(blocks=(records, ()), head=())
    maxn = predict(net, PROFILE).backbone_ms * 1e3
    low = predict(net, PROFILE, PROFILE.runtime("rt@15W")).backbone_ms * 1e3
    assert maxn == pytest.approx(2.0 + 4.0)              # host 2 us + 4 us compute
    assert low == pytest.approx(2.0 * 2 + 4.0 * 1000 / 400)  # CPU at half clock, GPU at 0.4x
    assert PROFILE.runtime("@15W").name == "rt@15W"
    with pytest.raises(UnknownNameError, match="no power mode 'BOGUS'.*MAXN, 15W"):
        PROFILE.runtime("rt@BOGUS")


def test_fit_recovers_a_runtime_from_its_own_latencies(monkeypatch):
    """Rows generated by a known multiplier set are reproduced by the fit within 5 %."""
    nets = {
        "dense": NetRecords(blocks=(tuple(conv(4_000_000, 64, 64, 9) for _ in range(8)), ()), head=()),
        "wide": NetRecords(blocks=(tuple(conv(40_000_000, 256, 256, 9) for _ in range(4)), ()), head=()),
        "tiny": NetRecords(blocks=(tuple(conv(10_000, 16, 16, 9) for _ in range(30)), ()), head=()),
        "mixed": NetRecords(blocks=(tuple(conv(2_000_000, 64, 64, a) for a in (1, 9) * 6), ()), head=()),
    }
    monkeypatch.setattr(pub, "model_records", lambda model, size, batch=1, classes=1000: nets[model])
    truth = replace(RT, fit={"conv_compute": 0.6, "overhead": 1.8})
    rows = [PublishedRow("synthetic", m, "rt", "fp32", 1, 224, "MAXN",
                         pub.predict_row(PROFILE, truth, PublishedRow("", m, "rt", "fp32", 1, 224, "MAXN", 1.0)))
            for m in nets]
    fit = pub.fit_runtime(PROFILE, RT, rows)
    errs = pub.errors(PROFILE, replace(RT, fit=fit), rows)
    assert max(abs(e) for e in errs) < 0.05
    assert fit["overhead"] > 1.3 and fit["conv_compute"] < 0.8
    loo = pub.leave_one_model_out(PROFILE, RT, rows)
    assert len(loo) == 4 and all(abs(e) < 0.5 for e in loo)


@pytest.mark.parametrize("name", [p["name"] for p in list_profiles()])
def test_every_shipped_profile_cites_published_rows(name):
    profile = load_profile(name)
    if name == "jetson-orin-nx":
        pytest.xfail("one published batch-1 row found for the Orin NX: MLPerf ResNet-50 INT8 "
                     "SingleStream (its other MLPerf edge models are no dse backbones; no "
                     "ResNet-18/34, VGG-16 or MobileNetV2 batch-1 table found for this board)")
    rows = profile.fitted_to
    assert len(rows) >= 4 and len({r.model for r in rows}) >= 2
    for r in rows:
        assert r.source and r.model and r.runtime in profile.runtimes and r.ms > 0
        assert r.batch == 1 and r.input_size == 224 and r.power_mode in profile.device.power_modes
        assert r.classes >= 1
        assert r.precision == profile.runtimes[r.runtime].dtype
        assert profile.runtimes[r.runtime].fit_error["rows"] >= 1


def test_error_line_states_validation():
    assert "not validated" in error_line(PROFILE)
    nano = load_profile("jetson-nano")
    line = error_line(nano, nano.runtime("tensorrt-fp16@5W"))
    assert line.startswith("latency model error on jetson-nano/tensorrt-fp16: median")


@pytest.mark.slow
def test_fit_reproduces_its_rows_within_the_error_it_reports():
    """jetson-tx2 (4 ncnn rows on 4 backbones at 224 px): the stored fit gives the stored error."""
    profile = load_profile("jetson-tx2")
    for name, rows in pub.rows_by_runtime(profile).items():
        rt = profile.runtimes[name]
        errs = [abs(e) for e in pub.errors(profile, rt, rows)]
        assert max(errs) <= rt.fit_error["max_abs_error"] + 1e-3
        assert sorted(errs)[len(errs) // 2 - 1] <= rt.fit_error["median_abs_error"] + 1e-3


def test_profile_show_prints_the_error_and_power_mode():
    res = CliRunner().invoke(cli, ["profile", "show", "jetson-agx-orin", "--power-mode", "15W",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["selected"]["power_mode"] == "15W"
    assert out["selected"]["clock_scale"] == pytest.approx(420.75 / 1300.0)
    assert out["published_error"]["tensorrt-int8"]["rows"] == 1
    bad = CliRunner().invoke(cli, ["profile", "show", "jetson-agx-orin", "--power-mode", "BOGUS"])
    assert bad.exit_code == 2 and "no power mode 'BOGUS'" in bad.output
    text = CliRunner().invoke(cli, ["profile", "show", "jetson-nano"])
    assert "latency model error on jetson-nano/tensorrt-fp16" in text.output


def test_latency_power_mode_slows_a_jetson_and_names_the_mode():
    args = ["latency", "--profile", "jetson-agx-orin", "--backbone", "digits-resnet", "--json"]
    maxn = CliRunner().invoke(cli, args)
    low = CliRunner().invoke(cli, args + ["--power-mode", "15W"])
    assert maxn.exit_code == 0 and low.exit_code == 0, low.output
    a, b = json.loads(maxn.output), json.loads(low.output)
    assert b["runtime"] == "tensorrt-fp16@15W" and a["runtime"] == "tensorrt-fp16"
    assert b["total_ms"] > a["total_ms"]
    bad = CliRunner().invoke(cli, args + ["--power-mode", "NOPE"])
    assert bad.exit_code == 2 and "no power mode 'NOPE'" in bad.output


def test_row_classes_default_and_check():
    """A row's ``classes`` (the measured network's outputs) defaults to 1000 and must be >= 1."""
    from dse.cost.profiles import parse_profile
    from dse.errors import ConfigError
    from dse.yamlio import read_yaml

    path = load_profile("jetson-xavier-nx").path
    raw = read_yaml(path)
    rows = parse_profile(raw, path).fitted_to
    assert rows[0].classes == 1000 and {r.classes for r in rows[1:]} == {3}
    raw["fitted_to"][1]["classes"] = 0
    with pytest.raises(ConfigError, match=r"fitted_to\[1\].classes must be an integer >= 1, got 0"):
        parse_profile(raw, path)


def test_output_size_saturation_halves_a_layer_that_fills_half_the_device():
    # gemm (M=100, N=64, K=576): M x N = 6400 output elements. With mn_half 6400 the layer runs
    # at half the rate: 2e6 FLOP / (1e6 FLOP/us x 0.5 x 0.5) = 8 us, against 4 us without.
    def run(mn_half, fit=None, cout=64):
        ops = {**OPS, "conv": OpParams(overhead_us=2.0, compute_eff=0.5, memory_eff=1.0,
                                       mn_half=mn_half)}
        rt = replace(RT, ops=ops, fit=fit or {})
        k = kernels([conv(1_000_000, 64, cout, 9, in_elems=0, w=0, out=0)], False)[0]
        return kernel_time_us(k, DEVICE, rt)[1]

    assert run(0.0) == pytest.approx(4.0)
    assert run(6400.0) == pytest.approx(8.0)
    # a 4x wider layer (N = 256, as VGG-16 against a ResNet at the same resolution):
    # 25600 / (25600 + 6400) = 0.8 of the rate, 5 us for the same MACs
    assert run(6400.0, cout=256) == pytest.approx(5.0)
    # the fit's saturation multiplier scales mn_half: 6400 / (6400 + 12800) = 1/3 -> 12 us
    assert run(6400.0, fit={"saturation": 2.0}) == pytest.approx(12.0)


def test_power_mode_caps_power_and_energy_at_its_budget():
    from dse.cost.latency import energy_mj

    prof = replace(PROFILE, runtimes={"rt": replace(RT, power_w=20.0)})
    maxn, low = prof.runtime("rt@MAXN"), prof.runtime("rt@15W")
    assert maxn.power_w == 20.0 and low.power_w == 15.0   # budgets 30 W and 15 W
    assert energy_mj(10.0, maxn) == pytest.approx(200.0)
    assert energy_mj(10.0, low) == pytest.approx(150.0)   # <= 15 W x 10 ms
    # latency in the mode follows its clocks; energy = capped power x that latency
    records = (conv(1_000_000, 64, 64, 9),)
    net = NetRecords(blocks=(records, ()), head=())
    ms = predict(net, prof, low).backbone_ms
    assert ms == pytest.approx((2.0 * 2 + 4.0 * 1000 / 400) / 1e3)
    assert energy_mj(ms, low) == pytest.approx(15.0 * ms)


def test_runtime_power_above_its_mode_budget_is_rejected():
    from dse.cost.profiles import parse_profile
    from dse.errors import ConfigError
    from dse.yamlio import read_yaml

    path = load_profile("jetson-nano").path
    raw = read_yaml(path)
    raw["runtimes"]["tensorrt-fp16"]["power_w"] = 11
    with pytest.raises(ConfigError, match=r"runtimes.tensorrt-fp16.power_w must be <= the budget "
                                          r"of its power mode 'MAXN' \(10 W\), got 11"):
        parse_profile(raw, path)


def test_tx2_power_modes_slow_host_costs_by_the_cpu_clock():
    """MAXQ runs the A57 cores at 1.2 GHz against 2.0 GHz in MAXN: host costs x 2000 / 1200."""
    tx2 = load_profile("jetson-tx2")
    rt = tx2.runtimes["pytorch-fp16"]
    assert tx2.host_scale(tx2.runtime("pytorch-fp16@MAXQ")) == pytest.approx(rt.host_scale * 2000 / 1200)
    assert tx2.host_scale(tx2.runtime("pytorch-fp16@MAXN")) == pytest.approx(rt.host_scale)
    assert tx2.clock_scale(tx2.runtime("pytorch-fp16@MAXQ")) == pytest.approx(854.0 / 1300.5)
    assert tx2.runtime("pytorch-fp16@MAXQ").power_w == min(rt.power_w, 7.5)
