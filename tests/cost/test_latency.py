"""The latency model on hand-computed cases (dse/cost/latency.py)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from dse.cost.latency import energy_mj, expected_latency_ms, kernel_time_us, kernels, predict
from dse.cost.op_trace import OP_KINDS, LayerRecord, NetRecords
from dse.cost.profiles import Device, OpParams, PowerMode, Profile, Runtime

# A round-number device: 1000 GFLOPS = 1e6 FLOP/us, 100 GB/s = 1e5 B/us.
DEVICE = Device(kind="cpu", clock_mhz=1000.0, peak_gflops={"fp32": 1000.0, "fp16": 2000.0},
                memory_bandwidth_gbs=100.0,
                power_modes={"full": PowerMode("full", 10.0, 1000.0),
                             "half": PowerMode("half", 5.0, 500.0)},
                default_power_mode="full")
OPS = {k: OpParams(overhead_us=2.0, compute_eff=0.5, memory_eff=0.5) for k in OP_KINDS}
OPS["conv"] = OpParams(overhead_us=10.0, compute_eff=0.5, memory_eff=0.5)
RT = Runtime(name="rt", description="", dtype="fp32", ops=OPS, decision_overhead_us=20.0,
             inference_overhead_us=5.0, power_w=4.0)
PROFILE = Profile(name="toy", description="", device=DEVICE, runtimes={"rt": RT},
                  default_runtime="rt")


def conv(macs=1_000_000, in_elems=1000, w=1000, out=1000, gemm=(0, 0, 0)) -> LayerRecord:
    return LayerRecord("conv2d", "conv", macs=macs, in_elems=in_elems, weight_elems=w,
                       out_elems=out, gemm=gemm)


def relu(n=1000, fusable=True) -> LayerRecord:
    return LayerRecord("relu", "elementwise", in_elems=n, out_elems=n, fusable=fusable)


def test_compute_bound_conv():
    # 2e6 FLOP at 1e6 FLOP/us x 0.5 = 4 us; 12 kB at 5e4 B/us = 0.24 us (hidden, overlap 1).
    host, dev = kernel_time_us(kernels([conv()], False)[0], DEVICE, RT)
    assert host == pytest.approx(10.0)
    assert dev == pytest.approx(4.0)


def test_overlap_zero_adds_memory_time():
    rt = replace(RT, ops={**OPS, "conv": replace(OPS["conv"], overlap=0.0)})
    _, dev = kernel_time_us(kernels([conv()], False)[0], DEVICE, rt)
    assert dev == pytest.approx(4.0 + 12_000 / 5e4)


def test_memory_bound_elementwise():
    # relu over 1e6 floats: 8e6 bytes at 100 GB/s x 0.5 = 160 us, plus 2 us overhead.
    host, dev = kernel_time_us(kernels([relu(1_000_000)], False)[0], DEVICE, RT)
    assert (host, dev) == (pytest.approx(2.0), pytest.approx(160.0))


def test_overhead_dominated_tiny_layers():
    records = [relu(1, fusable=False) for _ in range(10)]
    net = NetRecords(blocks=(tuple(records), ()), head=())
    # 10 x (2 us + 8 bytes / 5e4 B/us) + 5 us per inference = 25.0016 us
    assert predict(net, PROFILE).backbone_ms == pytest.approx((10 * (2 + 8 / 5e4) + 5) / 1e3)


def test_gemm_saturation_halves_throughput():
    rt = replace(RT, ops={**OPS, "conv": replace(OPS["conv"], m_half=16.0)})
    _, dev = kernel_time_us(kernels([conv(gemm=(16, 64, 64))], False)[0], DEVICE, rt)
    assert dev == pytest.approx(8.0)  # M == m_half: half efficiency, twice the 4 us


def test_fusion_merges_conv_bn_relu_add():
    bn = LayerRecord("batch_norm", "norm", in_elems=1000, weight_elems=64, out_elems=1000, fusable=True)
    add = LayerRecord("add", "elementwise", in_elems=2000, out_elems=1000, fusable=True)
    records = [conv(), bn, add, relu()]
    assert len(kernels(records, False)) == 4
    (k,) = kernels(records, True)
    assert (k.kind, k.macs, k.ops) == ("conv", 1_000_000, 4)
    # reads: conv input + residual operand; weights: conv + bn; writes: the last output only
    assert (k.in_elems, k.weight_elems, k.out_elems) == (2000, 1064, 1000)
    fused = predict(NetRecords(blocks=(tuple(records), ()), head=()), PROFILE, replace(RT, fusion=True))
    unfused = predict(NetRecords(blocks=(tuple(records), ()), head=()), PROFILE, RT)
    # fused: 10 us overhead + max(4 us, 16.256 kB / 5e4 B/us) + 5 us inference
    assert fused.backbone_ms == pytest.approx((10 + 4 + 5) / 1e3)
    assert unfused.backbone_ms > fused.backbone_ms + 6 / 1e3  # three more overheads at least


def test_non_fusable_op_starts_a_kernel():
    assert len(kernels([conv(), relu(fusable=False)], True)) == 2


def exit_net() -> NetRecords:
    block = (relu(1, fusable=False),)  # 2 us + 0.00016 us each
    branch = (relu(1, fusable=False), relu(1, fusable=False))
    return NetRecords(blocks=(block,) * 4, head=(relu(1, fusable=False),),
                      branches=(branch, branch), exit_blocks=(0, 2))


def test_exit_latency_accounting():
    t = 2 + 8 / 5e4  # one tiny kernel
    pred = predict(exit_net(), PROFILE)
    # exit 1: block 0 + branch 1 + decision; exit 2: + blocks 1-2 + branch 2 + decision;
    # final: + block 3 + head; every path pays the 5 us per-inference overhead once.
    e1 = 5 + 3 * t + 20
    e2 = e1 + 4 * t + 20
    assert pred.exit_ms == pytest.approx((e1 / 1e3, e2 / 1e3, (e2 + 2 * t) / 1e3))
    assert pred.backbone_ms == pytest.approx((5 + 5 * t) / 1e3)
    assert pred.decision_ms == pytest.approx(0.02)


def test_async_runtime_overlaps_host_and_device_between_syncs():
    rt = replace(RT, async_launch=True)
    big = (relu(1_000_000, fusable=False),)  # host 2 us, device 160 us
    net = NetRecords(blocks=(big, big), head=(), branches=((relu(1, fusable=False),),),
                     exit_blocks=(0,))
    pred = predict(net, PROFILE, rt)
    # stretch 1 = max(host 4, device 160.00016); final adds max(host 2, device 160)
    assert pred.exit_ms[0] == pytest.approx((5 + 160 + 8 / 5e4 + 20) / 1e3)
    assert pred.exit_ms[1] == pytest.approx((5 + 160 + 8 / 5e4 + 20 + 160) / 1e3)


def test_power_mode_clock_scales_compute():
    rt = replace(RT, power_mode="half")
    net = NetRecords(blocks=((conv(),), ()), head=())
    assert predict(net, PROFILE, rt).backbone_ms == pytest.approx((10 + 8 + 5) / 1e3)


def test_fp16_uses_its_peak_and_element_size():
    rt = replace(RT, dtype="fp16")
    host, dev = kernel_time_us(kernels([conv()], False)[0], DEVICE, rt)
    assert dev == pytest.approx(2.0)
    _, dev = kernel_time_us(kernels([relu(1_000_000)], False)[0], DEVICE, rt)
    assert dev == pytest.approx(80.0)


def test_expected_latency_and_energy():
    assert expected_latency_ms([1.0, 2.0, 4.0], [0.5, 0.25, 0.25]) == pytest.approx(2.0)
    assert energy_mj(3.0, RT) == pytest.approx(12.0)  # 4 W x 3 ms
    with pytest.raises(ValueError, match="sum to 1"):
        expected_latency_ms([1.0, 2.0], [0.5, 0.6])
    with pytest.raises(ValueError, match="2 exit fractions for 3 exits"):
        expected_latency_ms([1.0, 2.0, 3.0], [0.5, 0.5])


def test_latency_grows_with_the_exit_index():
    pred = predict(exit_net(), PROFILE)
    assert list(pred.exit_ms) == sorted(pred.exit_ms)


def test_pad_uses_elementwise_params_unless_the_runtime_has_its_own():
    pad = LayerRecord("pad", "pad", in_elems=1000, out_elems=3000)
    # elementwise params: 2 us + 16 kB at 1e5 B/us x 0.5 = 0.32 us.
    host, dev = kernel_time_us(kernels([pad], False)[0], DEVICE, RT)
    assert (host, dev) == (pytest.approx(2.0), pytest.approx(0.32))
    own = replace(RT, ops={**OPS, "pad": OpParams(overhead_us=5.0, compute_eff=0.5, memory_eff=0.1)})
    host, dev = kernel_time_us(kernels([pad], False)[0], DEVICE, own)
    assert (host, dev) == (pytest.approx(5.0), pytest.approx(1.6))  # 16 kB at 1e4 B/us


def test_strided_im2col_convolutions_use_their_own_parameters_where_a_runtime_has_them():
    """A 3x3 stride-2 im2col convolution (kind conv_gemm, stride 2) is priced with the runtime's
    conv_gemm_strided parameters; a stride-1 one, a 1x1 one, or a runtime without them falls
    back (conv_gemm_strided -> conv_gemm -> conv)."""
    def rec(stride, area=9):
        return LayerRecord("conv2d", "conv_gemm", macs=1_000_000, in_elems=1000, weight_elems=1000,
                           out_elems=1000, kernel_area=area, stride=stride)

    gemm = OpParams(overhead_us=3.0, compute_eff=0.5, memory_eff=0.5)
    strided = OpParams(overhead_us=7.0, compute_eff=0.25, memory_eff=0.5)
    both = replace(RT, ops={**OPS, "conv_gemm": gemm, "conv_gemm_strided": strided})
    plain = replace(RT, ops={**OPS, "conv_gemm": gemm})

    def cost(r, rt):
        return kernel_time_us(kernels([r], False)[0], DEVICE, rt)

    assert cost(rec(2), both) == pytest.approx((7.0, 8.0))   # 2e6 FLOP at 1e6 x 0.25 per us
    assert cost(rec(1), both) == pytest.approx((3.0, 4.0))
    assert cost(rec(2, area=1), both) == pytest.approx((3.0, 4.0))
    assert cost(rec(2), plain) == pytest.approx((3.0, 4.0))
    assert cost(rec(2), RT) == pytest.approx((10.0, 4.0))    # no im2col parameters: conv's
    assert RT.op("conv_gemm_strided") == OPS["conv"]
