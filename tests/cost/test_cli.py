"""CLI: dse profile list/show/calibrate/validate and dse latency (exit code 2 on user errors)."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from dse.cli import cli
from dse.cost.profiles import SHIPPED_DIR


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_profile_list_shows_aliases():
    res = run("profile", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["jetson-nano"]["aliases"] == ["jetson", "nano"]
    assert rows["raspberry-pi-4"]["default_runtime"] == "native-fp32"
    table = run("profile", "list")
    assert table.exit_code == 0 and "jetson-nano" in table.output and "jetson" in table.output


def test_profile_show_by_alias():
    res = run("profile", "show", "jetson", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["name"] == "jetson-nano" and data["device"]["memory_bandwidth_gbs"] == 25.6
    assert "NVIDIA" in " ".join(data["device"]["sources"])
    assert "tensorrt-fp16:" in run("profile", "show", "jetson-nano").output


def test_latency_json_keys():
    res = run("latency", "--profile", "jetson", "--backbone", "resnet8", "--exits", "2",
              "--placement", "linear", "--branch", "bnpool", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"profile", "runtime", "backbone", "input_size", "total_ms", "exits"} <= set(out)
    assert (out["profile"], out["runtime"], out["backbone"], out["input_size"]) == (
        "jetson-nano", "tensorrt-fp16", "resnet8", 32)
    assert len(out["exits"]) == 3 and out["exits"][-1]["final"]
    for e in out["exits"]:
        assert {"block", "latency_ms", "cum_macs"} <= set(e)
    lat = [e["latency_ms"] for e in out["exits"]]
    assert lat == sorted(lat) and out["total_ms"] < lat[-1]


def test_latency_runtime_batch_and_path(tmp_path):
    path = tmp_path / "board.yaml"
    path.write_text((SHIPPED_DIR / "raspberry-pi-4.yaml").read_text().replace(
        "name: raspberry-pi-4", "name: board"))
    one = json.loads(run("latency", "--profile", str(path), "--runtime", "pytorch-fp32",
                         "--backbone", "digits-resnet", "--json").output)
    four = json.loads(run("latency", "--profile", str(path), "--runtime", "pytorch-fp32",
                          "--backbone", "digits-resnet", "--batch", "4", "--json").output)
    assert one["profile"] == "board" and one["runtime"] == "pytorch-fp32"
    assert four["total_ms"] > one["total_ms"] and four["batch"] == 4


@pytest.mark.parametrize("args, message", [
    (("--profile", "jetson-nanoo"), "unknown hardware profile 'jetson-nanoo'"),
    (("--profile", "jetson", "--runtime", "onnx"), "has no runtime 'onnx'; expected one of: tensorrt-fp16"),
    (("--profile", "missing/board.yaml"), "missing/board.yaml: profile file does not exist"),
])
def test_latency_bad_names_exit_2(args, message):
    res = run("latency", *args, "--backbone", "resnet8")
    assert res.exit_code == 2 and message in res.output


def test_bad_profile_file_exit_2(tmp_path):
    raw = yaml.safe_load((SHIPPED_DIR / "jetson-nano.yaml").read_text())
    raw["device"]["memory_bandwidth_gbs"] = -25.6
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    res = run("profile", "show", str(bad))
    assert res.exit_code == 2
    assert f"{bad}: device.memory_bandwidth_gbs must be > 0, got -25.6" in res.output
    res = run("latency", "--profile", str(bad), "--backbone", "resnet8")
    assert res.exit_code == 2 and "memory_bandwidth_gbs" in res.output
    assert "Traceback" not in res.output


def test_validate_unknown_runtime_exit_2():
    res = run("profile", "validate", "--profile", "rpi4", "--runtime", "tflite")
    assert res.exit_code == 2 and "no runtime 'tflite'" in res.output


def test_calibrate_refuses_to_overwrite(tmp_path):
    target = tmp_path / "x.yaml"
    target.write_text("name: x\n")
    res = run("profile", "calibrate", "--name", "x", "--out", str(target))
    assert res.exit_code == 2 and "already exists" in res.output
    res = run("profile", "calibrate", "--name", "a/b", "--out", str(tmp_path / "y.yaml"))
    assert res.exit_code == 2 and "--name must be a plain profile name" in res.output


@pytest.mark.slow
def test_calibrate_then_validate_quick(tmp_path):
    out = tmp_path / "here.yaml"
    res = run("profile", "calibrate", "--name", "here", "--out", str(out), "--quick",
              "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["path"] == str(out) and summary["runtime"] == "host"
    res = run("profile", "validate", "--profile", str(out), "--quick", "--rounds", "2", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert {"n", "mape", "within_10pct", "spearman", "rows", "by_backbone"} <= set(result)
    assert result["n"] == len(result["rows"]) == 5
    assert sum(v["n"] for v in result["by_backbone"].values()) == 5


def test_an_exit_count_that_disagrees_with_the_positions_is_refused():
    res = run("latency", "--profile", "jetson", "--backbone", "resnet20", "--exits", "2",
              "--placement", "explicit", "--positions", "0.2,0.5,0.8")
    assert res.exit_code == 2
    assert "--exits 2 but --positions gives 3 values" in res.output
    res = run("latency", "--profile", "jetson", "--backbone", "resnet20", "--placement",
              "explicit", "--positions", "0.2,0.5,0.8", "--json")
    assert res.exit_code == 0, res.output
