"""``dse profile calibrate|validate --runtime onnxruntime``: ONNX Runtime as the measuring
engine (runtime names, forced exits through the bundle runner, CLI errors, end to end)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from dse.cli import cli
from dse.cost.harness import REFERENCES
from dse.cost.microbench import reference_op
from dse.cost.profiles import load_profile, read_profile
from dse.errors import UnknownNameError
from dse.export.ort_bench import exit_calls, op_runner, runtime_name, write_cut_bundle
from dse.export.ort_validate import is_ort_runtime, resolve_runtime
from dse.export.runner import Bundle
from dse.models.backbones import Backbone
from dse.models.multiexit import MultiExitNet


def run(*args):
    return CliRunner().invoke(cli, list(args))


def one_line_exit_2(res, message: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_kernels_run_exported_as_in_pytorch(name):
    op, x = reference_op(name)  # ONNX Runtime's calibration and validation bracket with this
    (got,) = op_runner(op, x, threads=1)()
    np.testing.assert_allclose(got, op(x).numpy(), rtol=1e-4, atol=1e-4)


def test_runtime_names_follow_the_provider():
    assert runtime_name("CPUExecutionProvider") == "onnxruntime-cpu-fp32"
    assert runtime_name("CUDAExecutionProvider") == "onnxruntime-cuda-fp32"
    assert is_ort_runtime("onnxruntime-cpu-fp32") and is_ort_runtime("onnxruntime-fp32")
    assert not is_ort_runtime("host") and not is_ort_runtime("onnxruntimes")


def test_onnxruntime_picks_the_profiles_onnx_runtime_runtime():
    desktop = load_profile("desktop-cpu")  # runtimes pytorch-fp32 and onnxruntime-fp32
    assert resolve_runtime(desktop, "onnxruntime", None).name == "onnxruntime-fp32"
    assert resolve_runtime(desktop, None, None).name == desktop.default_runtime
    with pytest.raises(UnknownNameError, match="no ONNX Runtime runtime"):
        resolve_runtime(load_profile("rpi4"), "onnxruntime", None)


@pytest.mark.parametrize("args, message", [
    (("--runtime", "tflite"), "--runtime 'tflite': expected one of pytorch, onnxruntime"),
    (("--runtime", "onnxruntime", "--provider", "NoSuchExecutionProvider"),
     "--provider 'NoSuchExecutionProvider' is not available"),
    (("--provider", "CPUExecutionProvider"), "applies to ONNX Runtime only"),
])
def test_calibrate_bad_runtime_or_provider_is_one_line_exit_2(tmp_path, args, message):
    res = run("profile", "calibrate", "--name", "x", "--out", str(tmp_path / "x.yaml"), *args)
    one_line_exit_2(res, message)
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("args, message", [
    (("--profile", "rpi4", "--runtime", "onnxruntime"), "has no ONNX Runtime runtime"),
    (("--profile", "desktop-cpu", "--runtime", "onnxruntime", "--provider", "Nope"),
     "--provider 'Nope' is not available"),
    (("--profile", "desktop-cpu", "--runtime", "pytorch-fp32", "--provider",
      "CPUExecutionProvider"), "applies to ONNX Runtime only"),
])
def test_validate_bad_runtime_or_provider_is_one_line_exit_2(args, message):
    one_line_exit_2(run("profile", "validate", *args), message)


class _Branch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.conf = nn.Linear(4, 3), nn.Linear(4, 1)

    def forward(self, x):
        z = x.mean((2, 3))
        return self.fc(z), torch.sigmoid(self.conf(z)).squeeze(1)


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("criterion", ["maxprob", "learned", "entropy"])
def test_forced_exits_leave_where_they_are_sent_through_the_bundle_runner(tmp_path, criterion):
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()) for _ in range(3)]
    net = MultiExitNet(Backbone(blocks, _Head()), [0, 1], [_Branch(), _Branch()]).eval()
    bundle = Bundle(write_cut_bundle(net, (4, 6, 6), tmp_path / "b", criterion), threads=1)
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    calls = exit_calls(bundle, x)  # raises when a forced exit is not the one taken
    assert [call()[1] for call in calls] == [0, 1, 2]
    # the final exit's logits are the PyTorch network's (same graphs dse export writes)
    with torch.no_grad():
        want = net(torch.from_numpy(x))[-1][0].numpy()
    np.testing.assert_allclose(calls[-1]()[0], want[0], atol=1e-5)


@pytest.mark.slow
def test_calibrate_onnxruntime_quick_end_to_end_then_validate(tmp_path):
    out = tmp_path / "board.yaml"
    res = run("profile", "calibrate", "--name", "board", "--out", str(out), "--runtime",
              "onnxruntime", "--quick", "--threads", "1", "--reference-kernel",
              "conv3x3-32c-32px", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["runtime"] == "onnxruntime-cpu-fp32" and summary["fusion"] is True
    assert summary["provider"] == "CPUExecutionProvider" and summary["threads"] == 1
    profile = read_profile(out)  # loadable, with the ONNX Runtime runtime as its default
    rt = profile.runtime()
    assert rt.name == "onnxruntime-cpu-fp32" and rt.fusion and rt.call_overhead_us == 0.0
    assert rt.graph_run_overhead_us > 0 and rt.threads == 1
    # ops are timed inside graphs, so no in-network stage 2: ONNX Runtime's arena allocator
    # pays no per-MB page faults and the decision keeps its measured cost
    assert rt.alloc_us_per_mb == 0.0
    # the layout plan is on exactly when the profiler saw reorders (NCHWc kernels on x86)
    assert rt.blocked_layout == (rt.reorder_us_per_kelem > 0)
    assert rt.layout_block in (4, 8, 16, 32)  # observed (dse.export.ort_bench.layout_block)
    assert rt.reference == "conv3x3-32c-32px" and rt.reference_us > 0
    res = run("profile", "validate", "--profile", str(out), "--runtime", "onnxruntime",
              "--quick", "--rounds", "2", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["reference"] == "conv3x3-32c-32px"  # the calibration's own kernel
    assert result["engine"] == "onnxruntime" and result["runtime"] == "onnxruntime-cpu-fp32"
    assert result["n"] == len(result["rows"]) == 5
    assert 0.0 <= result["repeatability"] <= 1.0 and "spearman" in result
    res = run("profile", "validate", "--profile", str(out), "--quick", "--rounds", "2")
    assert res.exit_code == 0 and "repeatability:" in res.output
    assert "median error by backbone: " in res.output
    counts = [tuple(map(int, m)) for m in re.findall(r"\((\d+)/(\d+) within", res.output)]
    assert sum(n for _, n in counts) == 5 and all(0 <= k <= n for k, n in counts)
