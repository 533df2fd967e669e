"""``dse run`` and the shipped runner: the same predictions, exits and logits as the PyTorch
early-exit path on every test image, and the same accuracy as ``dse evaluate``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dse.cli import cli
from dse.export import open_bundle
from dse.export.runner import criterion_fires, criterion_score
from dse.models.criteria import get_criterion
from tests.export.cases import pytorch_early_exit

# importing torch or dse from the shipped runner fails in this interpreter
NO_TORCH = """
import sys, runpy
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'dse'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
path = BUNDLE + '/run_bundle.py'
sys.argv = [path] + sys.argv[1:]
runpy.run_path(path, run_name='__main__')
"""


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_same_as_pytorch(case, x):
    ref_logits, ref_exits = pytorch_early_exit(case.model_file, x)
    bundle = open_bundle(case.bundle, threads=1)
    got = bundle.run(x.numpy(), warmup=0)
    assert got["exit_index"] == ref_exits
    assert got["predictions"] == ref_logits.argmax(axis=1).tolist()
    logits = np.stack([bundle.infer(x[i:i + 1].numpy())[0] for i in range(x.shape[0])])
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=0)
    return ref_exits, bundle


def test_untrained_bundle_equals_the_pytorch_early_exit_path(untrained, test_images):
    exits, _ = assert_same_as_pytorch(untrained, test_images[0][:100])
    assert len(set(exits)) > 1  # random confidences: more than one exit taken


@pytest.mark.slow
def test_runner_equals_the_pytorch_early_exit_path_on_every_test_image(case, test_images):
    ref_exits, bundle = assert_same_as_pytorch(case, test_images[0])
    early = np.asarray(ref_exits) < bundle.manifest["exits"][-1]["index"]
    assert early.any(), "the case's thresholds should let some images leave early"


@pytest.mark.slow
def test_dse_run_accuracy_equals_dse_evaluate(case):
    r = run("run", "--bundle", case.bundle, "--threads", 1, "--warmup", 2, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    r = run("evaluate", "--checkpoint", case.model_file, "--latency-samples", 5, "--warmup", 0,
            "--budgets", 3, "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert got["accuracy"] == pytest.approx(ev["test_accuracy"])  # both percent
    assert got["exit_fractions"] == pytest.approx(ev["exit_fractions"])
    assert got["expected_macs"] == pytest.approx(ev["expected_macs"])
    assert got["images"] == sum(got["exit_counts"]) == 359
    m = got["measured_here"]
    assert m["provider"] == "CPUExecutionProvider" and m["per_input_median_ms"] > 0
    seen = [c > 0 for c in got["exit_counts"]]
    assert [t is not None for t in m["per_exit_median_ms"]] == seen
    p = got["predicted_on_profile"]
    assert p["profile"] == "jetson-nano"
    assert p["expected_ms"] == pytest.approx(np.dot(got["exit_fractions"], p["per_exit_ms"]))


def test_dse_run_table_keeps_measured_and_predicted_apart(untrained):
    r = run("run", "--bundle", untrained.bundle, "--limit", 20, "--warmup", 0,
            "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "measured here ms" in r.output and "predicted on profile ms" in r.output
    assert "20 images" in r.output and "measured here:" in r.output
    assert "predicted on profile jetson-nano" in r.output


def test_shipped_runner_runs_without_torch_or_dse(untrained, test_images, tmp_path):
    t = untrained
    x, y = test_images
    np.save(tmp_path / "x.npy", x[:40].numpy())
    np.save(tmp_path / "y.npy", y[:40].numpy())
    code = NO_TORCH.replace("BUNDLE", repr(str(t.bundle)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", code, "--inputs", str(tmp_path / "x.npy"),
                        "--labels", str(tmp_path / "y.npy"), "--threads", "1", "--json"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    ref_logits, ref_exits = pytorch_early_exit(t.model_file, x[:40])
    assert out["exit_index"] == ref_exits
    assert out["accuracy"] == pytest.approx(100 * np.mean(ref_logits.argmax(1) == y[:40].numpy()))


@pytest.mark.parametrize("name", ["learned", "maxprob", "entropy"])
def test_runner_scores_are_dse_criteria(name):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(200, 10)) * 3).astype(np.float32)
    conf = rng.uniform(size=200).astype(np.float32)
    crit = get_criterion(name)
    want = crit.score_torch(torch.from_numpy(logits), torch.from_numpy(conf)).numpy()
    got = criterion_score(name, logits, conf)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)  # bit for bit: the same exits at any threshold
    np.testing.assert_allclose(got, crit.score_np(logits, conf), atol=1e-6)
    for t in (0.2, 0.5, 0.8):
        assert (criterion_fires(name, got, t) == crit.exits_torch(torch.from_numpy(want), t)
                .numpy()).all()
