"""Bad bundles and bad inputs: one line on stderr, exit status 2 (dse run and run_bundle.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from dse.cli import cli


@pytest.fixture
def bundle(untrained, tmp_path):
    """A private copy of a bundle to break."""
    return shutil.copytree(untrained.bundle, tmp_path / "bundle")


def fails(bundle, *extra) -> str:
    r = CliRunner().invoke(cli, ["run", "--bundle", str(bundle), "--limit", "3", "--warmup", "0",
                                 *extra])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def edit_manifest(bundle, edit) -> None:
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


def test_missing_graph(bundle):
    (bundle / "head_1.onnx").unlink()
    assert "graph head_1.onnx listed in manifest.json is missing" in fails(bundle)


def test_graph_swapped_for_another(bundle):
    shutil.copyfile(bundle / "head_0.onnx", bundle / "head_1.onnx")
    assert "head_1.onnx: does not match manifest.json (sha256 differs)" in fails(bundle)


def test_manifest_shapes_that_do_not_match_the_graph(bundle):
    def edit(m):
        m["graphs"]["segment_1.onnx"]["outputs"][0]["shape"][1] = 99
    edit_manifest(bundle, edit)
    line = fails(bundle)
    assert "segment_1.onnx: outputs" in line and "do not match manifest.json" in line


def test_manifest_input_size_that_does_not_match_the_graphs(bundle):
    edit_manifest(bundle, lambda m: m["input"].__setitem__("shape", [1, 1, 16, 16]))
    assert "input.shape [1, 1, 16, 16] does not match segment_0.onnx" in fails(bundle)


def test_thresholds_that_do_not_match_the_exits(bundle):
    edit_manifest(bundle, lambda m: m["criterion"].__setitem__("thresholds", [0.5]))
    assert "2 early exits but 1 thresholds" in fails(bundle)


def test_not_a_bundle(tmp_path):
    assert "no manifest.json" in fails(tmp_path)
    assert "no such bundle folder" in fails(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{")
    assert "not readable JSON" in fails(tmp_path)


def test_unknown_provider_and_wrong_dataset(bundle):
    assert "execution provider 'NoSuchProvider' is not available" in fails(
        bundle, "--provider", "NoSuchProvider")
    edit_manifest(bundle, lambda m: m["classes"].__setitem__("count", 7))
    assert "10 classes x 1 channels, but bundle" in fails(bundle)


def test_runner_script_rejects_inputs_of_the_wrong_size(bundle, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 16, 16), dtype=np.float32))
    p = subprocess.run([sys.executable, str(bundle / "run_bundle.py"), "--inputs",
                        str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: inputs of shape [2, 1, 16, 16], the bundle takes "
                                "[N, 1, 8, 8] (input.shape in manifest.json)")
