"""``dse export``: graphs that pass onnx.checker, a manifest that describes them, the same bytes
twice, and ONNX Runtime outputs equal to PyTorch's (segments, heads and the all-exits graph)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from dse.cli import cli
from dse.export import export_bundle
from dse.export.graphs import OPSET
from dse.train.model_file import collect_outputs, load_model
from tests.export.cases import CASES

RUNNER = Path(__file__).resolve().parents[2] / "dse" / "export" / "runner.py"


@pytest.mark.slow
def test_every_graph_passes_the_checker_and_the_manifest_describes_it(case):
    m = json.loads((case.bundle / "manifest.json").read_text())
    loaded = load_model(case.model_file)
    model = loaded.model
    assert m["opset"] == OPSET and m["format"] == "dse-bundle"
    assert m["input"]["shape"] == [1, 1, 8, 8] and m["input"]["dtype"] == "float32"
    assert m["input"]["normalisation"]["mean"] == loaded.inputs["mean"]
    assert m["classes"]["count"] == 10 and len(m["classes"]["names"]) == 10
    assert m["criterion"]["name"] == CASES[case.name][3]
    assert m["criterion"]["thresholds"] == loaded.config.policy.per_exit(model.num_exits - 1)
    assert m["isc"] is CASES[case.name][5]
    # segments cover every block once, in order, and end at the exits' attach blocks
    blocks = [b for e in m["exits"] for b in range(e["blocks"][0], e["blocks"][1] + 1)]
    assert blocks == list(range(len(model.backbone.blocks)))
    assert [e["block"] for e in m["exits"][:-1]] == list(model.exit_blocks)
    assert [e["cumulative_macs"] for e in m["exits"]] == loaded.exit_macs
    # the config names jetson: the prediction is on its profile, and says it is a prediction
    assert m["predicted"]["profile"] == "jetson-nano"
    assert all(e["predicted_latency_ms"] > 0 for e in m["exits"])
    assert m["source"]["model_file"] == str(case.model_file)
    learned = CASES[case.name][3] == "learned"
    for e in m["exits"][:-1]:
        assert e["outputs"] == (["logits", "confidence"] if learned else ["logits"])
    assert m["exits"][-1]["outputs"] == ["logits"]
    names = sorted(p.name for p in case.bundle.glob("*.onnx"))
    assert names == sorted(m["graphs"]) and m["all_exits"] == "all_exits.onnx"
    for name in names:
        proto = onnx.load(str(case.bundle / name))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == OPSET
    assert (case.bundle / "run_bundle.py").read_text() == RUNNER.read_text()


def test_export_is_deterministic(untrained, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    export_bundle(untrained.model_file, first, all_exits=True)
    export_bundle(untrained.model_file, again, all_exits=True)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in again.iterdir()) and "all_exits.onnx" in names
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name


def test_reexport_removes_only_its_own_stale_graphs(untrained, tmp_path):
    t = untrained
    out = tmp_path / "b"
    export_bundle(t.model_file, out, all_exits=True)
    (out / "notes.txt").write_text("mine")
    export_bundle(t.model_file, out)  # without --all-exits now
    assert not (out / "all_exits.onnx").exists() and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "manifest.json").read_text())["all_exits"] is None


@pytest.mark.slow
def test_all_exits_graph_equals_the_model_outputs(case, test_images):
    x, y = test_images
    loaded = load_model(case.model_file)
    ref = collect_outputs(loaded.model, x, y, isc=loaded.config.training.loss.isc)
    sess = ort.InferenceSession(str(case.bundle / "all_exits.onnx"),
                                providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"input": x.numpy()})
    k = loaded.model.num_exits
    for e in range(k):
        np.testing.assert_allclose(outs[e], ref.logits[e], atol=1e-4, rtol=0)
    if CASES[case.name][3] == "learned":
        for e in range(k - 1):
            np.testing.assert_allclose(outs[k + e], ref.conf[e], atol=1e-5, rtol=0)


def test_the_shipped_runner_imports_neither_torch_nor_dse():
    tree = ast.parse(RUNNER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "argparse", "hashlib", "json", "os", "statistics", "sys",
                        "time", "pathlib", "typing", "numpy", "onnxruntime"}, imported


def test_export_cli_json_and_errors(untrained, tmp_path):
    t = untrained
    r = CliRunner().invoke(cli, ["export", "--checkpoint", str(t.model_file), "--out",
                                 str(tmp_path / "b"), "--profile", "raspberry-pi-4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["manifest"]["predicted"]["profile"] != "jetson-nano"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    r = CliRunner().invoke(cli, ["export", "--checkpoint", str(t.model_file), "--out",
                                 str(tmp_path / "busy")])
    assert r.exit_code == 2 and "holds no bundle" in r.stderr
    assert (tmp_path / "busy" / "x.txt").exists()
    torch.save({"weights": 1}, tmp_path / "bb.pt")
    r = CliRunner().invoke(cli, ["export", "--checkpoint", str(tmp_path / "bb.pt")])
    assert r.exit_code == 2 and "not a trained multi-exit model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
