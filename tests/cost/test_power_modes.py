"""Power modes that cap the memory clock (EMC) and the GPU's TPCs (dse/cost/_profile_types.py,
dse/cost/latency.py), on hand-computed cases."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from click.testing import CliRunner

from dse.cli import cli
from dse.cost.latency import kernel_time_us, kernels, predict, saturation
from dse.cost.op_trace import OP_KINDS, LayerRecord, NetRecords
from dse.cost.profiles import (SHIPPED_DIR, Device, OpParams, PowerMode, Profile, Runtime,
                               load_profile, profile_to_dict, read_profile)
from tests.cost.test_profiles import _bad  # one-line error check on an edited jetson-nano.yaml

# 1000 GFLOPS = 1e6 FLOP/us and 100 GB/s = 1e5 B/us with every unit on (4 TPCs, EMC 2000 MHz).
DEVICE = Device(kind="gpu", clock_mhz=1000.0, peak_gflops={"fp32": 1000.0},
                memory_bandwidth_gbs=100.0, emc_mhz=2000.0, gpu_tpcs=4,
                power_modes={"full": PowerMode("full", 10.0, 1000.0, emc_mhz=2000.0, gpu_tpcs=4),
                             "halfmem": PowerMode("halfmem", 10.0, 1000.0, emc_mhz=1000.0),
                             "halftpc": PowerMode("halftpc", 10.0, 1000.0, gpu_tpcs=2)},
                default_power_mode="full")
OPS = {k: OpParams(overhead_us=2.0, compute_eff=0.5, memory_eff=0.5) for k in OP_KINDS}
RT = Runtime(name="rt", description="", dtype="fp32", ops=OPS, decision_overhead_us=0.0,
             inference_overhead_us=5.0, power_w=4.0)
PROFILE = Profile(name="toy", description="", device=DEVICE, runtimes={"rt": RT},
                  default_runtime="rt")


def _scales(mode: str) -> tuple[float, float, float, float]:
    rt = PROFILE.runtime(f"rt@{mode}")
    return (PROFILE.clock_scale(rt), PROFILE.host_scale(rt), PROFILE.bandwidth_scale(rt),
            PROFILE.sm_scale(rt))


def test_mode_scales_against_the_device():
    assert _scales("full") == (1.0, 1.0, 1.0, 1.0)
    assert _scales("halfmem") == (1.0, 1.0, 0.5, 1.0)
    assert _scales("halftpc") == (1.0, 1.0, 1.0, 0.5)


def test_half_the_emc_clock_doubles_a_memory_bound_depthwise_conv():
    # 3x3 depthwise over 1e6 fp32 elements: 9e6 MACs = 1.8e7 FLOP at 1e6 x 0.5 FLOP/us = 36 us;
    # 8e6 bytes (in + out) at 1e5 x 0.5 B/us = 160 us -> memory-bound; at half the EMC clock the
    # bandwidth halves: 320 us. Plus 2 us launch and 5 us per inference, unchanged.
    dw = LayerRecord("dw", "dwconv", macs=9_000_000, in_elems=1_000_000, weight_elems=0,
                     out_elems=1_000_000, gemm=(1_000_000, 1, 9))
    k = kernels([dw], False)[0]
    assert kernel_time_us(k, DEVICE, RT, *_scales("full")) == (pytest.approx(2.0), pytest.approx(160.0))
    assert kernel_time_us(k, DEVICE, RT, *_scales("halfmem"))[1] == pytest.approx(320.0)
    net = NetRecords(blocks=((dw,),), head=())
    assert predict(net, PROFILE, "rt@full").backbone_ms == pytest.approx((5 + 2 + 160) / 1e3)
    assert predict(net, PROFILE, "rt@halfmem").backbone_ms == pytest.approx((5 + 2 + 320) / 1e3)
    # compute-bound work does not see the memory clock
    conv = LayerRecord("c", "conv", macs=1_000_000, in_elems=100, weight_elems=100, out_elems=100)
    assert predict(NetRecords(blocks=((conv,),), head=()), PROFILE, "rt@halfmem").backbone_ms \
        == pytest.approx((5 + 2 + 4) / 1e3)


def test_half_the_tpcs_doubles_a_compute_bound_conv():
    # 1e6 MACs = 2e6 FLOP at 1e6 x 0.5 FLOP/us = 4 us; with 2 of 4 TPCs the peak halves: 8 us.
    conv = LayerRecord("c", "conv", macs=1_000_000, in_elems=100, weight_elems=100, out_elems=100)
    k = kernels([conv], False)[0]
    assert kernel_time_us(k, DEVICE, RT, *_scales("full"))[1] == pytest.approx(4.0)
    assert kernel_time_us(k, DEVICE, RT, *_scales("halftpc"))[1] == pytest.approx(8.0)
    net = NetRecords(blocks=((conv,),), head=())
    assert predict(net, PROFILE, "rt@halftpc").backbone_ms == pytest.approx((5 + 2 + 8) / 1e3)


def test_fewer_tpcs_fill_with_fewer_output_tiles():
    # GEMM M=100, N=64, K=576: M x N = 6400 output elements, mn_half 6400 (the full GPU's).
    # All TPCs: sat = 6400 / (6400 + 6400) = 1/2; 2 of 4: mn_half 3200, sat = 6400 / 9600 = 2/3.
    p = OpParams(overhead_us=2.0, compute_eff=0.5, memory_eff=0.5, mn_half=6400.0)
    assert saturation((100, 64, 576), p) == pytest.approx(0.5)
    assert saturation((100, 64, 576), p, 0.5) == pytest.approx(2 / 3)
    # 3,686,400 MACs = 7,372,800 FLOP: full 7.3728e6 / (1e6 x 0.5 x 1/2) = 29.4912 us;
    # half the TPCs 7.3728e6 / (0.5e6 x 0.5 x 2/3) = 44.2368 us (1.5x, not 2x: the SMs left fill).
    rt = replace(RT, ops={**OPS, "conv": p})
    conv = LayerRecord("c", "conv", macs=100 * 64 * 576, in_elems=1000, weight_elems=1000,
                       out_elems=6400, gemm=(100, 64, 576))
    k = kernels([conv], False)[0]
    assert kernel_time_us(k, DEVICE, rt, *_scales("full"))[1] == pytest.approx(29.4912)
    assert kernel_time_us(k, DEVICE, rt, *_scales("halftpc"))[1] == pytest.approx(44.2368)


def test_new_fields_round_trip(tmp_path):
    p = load_profile("jetson-orin-nx")
    out = tmp_path / "copy.yaml"
    out.write_text(yaml.safe_dump(profile_to_dict(p), sort_keys=False))
    again = read_profile(out)
    assert again.device == p.device
    assert again.device.power_modes["10W"] == PowerMode("10W", 10.0, 612.0, emc_mhz=2133.0,
                                                        gpu_tpcs=2)
    assert (again.device.emc_mhz, again.device.gpu_tpcs) == (3200.0, 4)


def _mode(**values):
    return lambda r: r["device"]["power_modes"]["5W"].update(values)


def test_bad_mode_values_are_one_line():
    assert "device.power_modes.5W.gpu_tpcs must be an integer >= 1, got -1" in _bad(_mode(gpu_tpcs=-1))
    assert "device.power_modes.5W.gpu_tpcs must be an integer >= 1, got 0.5" in _bad(_mode(gpu_tpcs=0.5))
    assert "device.power_modes.5W.gpu_tpcs must be <= device.gpu_tpcs (1), got 2" in _bad(
        _mode(gpu_tpcs=2))
    assert "device.power_modes.5W.emc_mhz must be > 0, got -800" in _bad(_mode(emc_mhz=-800))
    assert "device.gpu_tpcs must be an integer >= 1, got 0" in _bad(
        lambda r: r["device"].update(gpu_tpcs=0))
    assert "device.power_modes.MAXN.gpu_tpcs needs device.gpu_tpcs" in _bad(
        lambda r: r["device"].pop("gpu_tpcs"))
    assert "device.power_modes.5W.emc_mhz needs device.emc_mhz" in _bad(
        lambda r: (r["device"].pop("emc_mhz"), r["device"]["power_modes"]["MAXN"].pop("emc_mhz")))


@pytest.mark.parametrize("path", sorted(SHIPPED_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_profile_loads_and_its_default_mode_is_the_device(path):
    """The published rows are fitted in the default mode, where nothing may be scaled down."""
    p = load_profile(path.stem)
    rt = p.runtime()
    assert p.bandwidth_scale(rt) == 1.0 and p.sm_scale(rt) == 1.0
    for mode in p.device.power_modes:
        mrt = p.runtime(f"@{mode}")
        assert 0 < p.bandwidth_scale(mrt) and 0 < p.sm_scale(mrt) <= 1


def test_profile_show_lists_the_modes():
    res = CliRunner().invoke(cli, ["profile", "show", "jetson-orin-nx"])
    assert res.exit_code == 0, res.output
    assert "10W:" in res.output and "emc_mhz: 2133.0" in res.output and "gpu_tpcs: 2" in res.output
    res = CliRunner().invoke(cli, ["profile", "show", "jetson-orin-nx", "--power-mode", "10W",
                                   "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data["device"]["power_modes"]) == {"MAXN", "10W", "15W", "25W"}
    assert data["selected"]["sm_scale"] == 0.5
    assert data["selected"]["bandwidth_scale"] == pytest.approx(2133 / 3200)


def test_agx_xavier_modes_follow_its_nvpmodel_file():
    """Jetson AGX Xavier's modes as nvpmodel_t194.conf caps them (GPU, EMC, CPU clocks); its
    30 W modes share the GPU at 900 MHz and EMC at 1600 MHz and trade CPU cores for CPU clock
    (the profile gave MODE_30W_ALL's GPU 1236.75 MHz, found in no source, before)."""
    p = load_profile("jetson-agx-xavier")
    base = p.runtime("pytorch-fp16")
    for mode, cpu in (("MODE_30W_ALL", 1200.0), ("MODE_30W_6CORE", 1450.0),
                      ("MODE_30W_4CORE", 1780.0), ("MODE_30W_2CORE", 2100.0)):
        rt = p.runtime(f"pytorch-fp16@{mode}")
        assert p.clock_scale(rt) == pytest.approx(900 / 1377)
        assert p.bandwidth_scale(rt) == pytest.approx(1600 / 2133)
        assert p.sm_scale(rt) == 1.0
        assert p.host_scale(rt) == pytest.approx(p.host_scale(base) * 2265.6 / cpu)
    assert p.host_scale(base) == pytest.approx(base.host_scale)  # MAXN: the clock host costs hold at
    ten = p.runtime("pytorch-fp16@MODE_10W")
    assert (p.clock_scale(ten), p.sm_scale(ten)) == (pytest.approx(520 / 1377), 0.5)


def test_orin_nano_7w_caps_the_host_cpu():
    """Jetson Orin Nano's 7W mode caps its CPU at 960 MHz (nvpmodel_p3767_0003.conf) against
    1.5 GHz in the 15 W mode the published rows were measured in: an eager runtime's host costs
    grow by 1500 / 960, a TensorRT engine's device time by the GPU clock alone."""
    p = load_profile("jetson-orin-nano")
    base, seven = p.runtime("pytorch-fp16"), p.runtime("pytorch-fp16@7W")
    assert p.host_scale(base) == pytest.approx(base.host_scale)  # 15W: the clock costs hold at
    assert p.host_scale(seven) == pytest.approx(p.host_scale(base) * 1500 / 960)
    assert p.clock_scale(seven) == pytest.approx(408 / 625)
    assert p.sm_scale(seven) == 0.5
