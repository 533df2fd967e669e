"""User code without editing dse: ``module:factory`` from the current folder, and an installed
plugin package registering a backbone, branch, loss and shift through entry points.

The plugin package is "installed" the way pip leaves one: a module plus a ``.dist-info`` folder
with ``entry_points.txt`` on the Python path (no network, no pip). Each check runs in a fresh
interpreter, because a registry reads its entry points once per process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import torch
from torch import nn
import torch.nn.functional as F

from dse.models.exits import ExitBranch


def tiny_net(num_classes=10, in_channels=3):
    """An nn.Sequential: each child one block (the pooled classifier is the last)."""
    return nn.Sequential(nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU()),
                         nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                       nn.Linear(8, num_classes)))


tiny_net.input_size = 8


def max_branch(in_shape, num_classes, scale=1):
    return ExitBranch(nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()), in_shape[0],
                      num_classes)


max_branch.PARAMS = {"scale": (int, 1)}


def last_only(outputs, targets, *, teacher_logits=None, exit_costs=None, weight=1.0):
    return weight * F.cross_entropy(outputs[-1][0], targets)


last_only.PARAMS = (("weight", 1.0),)


def invert(x, gen):
    return 1.0 - x
'''

ENTRY_POINTS = '''
[dse.backbones]
tiny-net = dse_demo_plugin:tiny_net

[dse.branches]
maxpool = dse_demo_plugin:max_branch

[dse.losses]
last_only = dse_demo_plugin:last_only

[dse.shifts]
invert = dse_demo_plugin:invert

[dse.shifts]
broken = dse_demo_plugin:no_such_function
'''


@pytest.fixture
def site(tmp_path) -> Path:
    """A folder holding the installed plugin (module + dist-info), as pip would leave it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "dse_demo_plugin.py").write_text(PLUGIN)
    info = site / "dse_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dse-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS.replace("\n[dse.shifts]\nbroken",
                                                                "broken"))
    return site


def python(code: str, cwd: Path, *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, paths)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_installed_plugins_register_backbone_branch_loss_and_shift(site, tmp_path):
    r = python("""
        import json, warnings
        import torch
        warnings.simplefilter("always")
        from dse.models.backbones import BACKBONES, build_backbone, default_input_size
        from dse.models.exits import BRANCHES, build_branch
        from dse.design.losses import LOSS_KINDS, loss_param_names
        from dse.train.losses import LOSSES
        from dse.finetune.shifts import SHIFTS, apply_shift
        with warnings.catch_warnings(record=True) as caught:
            names = {"backbones": BACKBONES.names(), "branches": BRANCHES.names(),
                     "losses": LOSS_KINDS.names(), "train_losses": LOSSES.names(),
                     "shifts": SHIFTS.names()}
        net = build_backbone("tiny-net", num_classes=4, in_channels=1)
        branch = build_branch("maxpool", (8, 8, 8), 4, scale=2)
        x = torch.rand(2, 1, 8, 8)
        print(json.dumps({**names, "blocks": len(net.blocks), "net_name": net.name,
                          "input_size": default_input_size("tiny-net"),
                          "branch_out": list(branch(torch.rand(2, 8, 8, 8))[0].shape),
                          "loss_params": loss_param_names("last_only"),
                          "inverted": bool(torch.allclose(apply_shift("invert", x), 1 - x)),
                          "warnings": [str(w.message) for w in caught]}))
    """, tmp_path, site)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backbones"][-1] == "tiny-net" and "digits-resnet" in out["backbones"]
    assert out["branches"][-1] == "maxpool" and out["shifts"][-1] == "invert"
    assert "last_only" in out["losses"] and "last_only" in out["train_losses"]
    assert out["blocks"] == 3 and out["net_name"] == "tiny-net" and out["input_size"] == 8
    assert out["branch_out"] == [2, 4] and out["loss_params"] == ["weight"]
    assert out["inverted"]
    # a broken entry point is left out with one warning; the rest still works
    assert "broken" not in out["shifts"]
    assert [w for w in out["warnings"] if "shift plugin 'broken'" in w]

    # the CLI sees them too: the plugin backbone and branch in dse latency
    r = subprocess.run(
        [sys.executable, "-c", "from dse.cli import main; main()", "latency", "--backbone",
         "tiny-net", "--exits", "1", "--branch", "maxpool", "--json"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])},
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lat = json.loads(r.stdout)
    assert lat["backbone"] == "tiny-net" and lat["input_size"] == 8 and len(lat["exits"]) == 2


@pytest.mark.slow
def test_module_factory_and_module_fn_resolve_from_the_current_folder(tmp_path):
    (tmp_path / "mynets.py").write_text(PLUGIN)
    dse = [sys.executable, "-c", "from dse.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the current folder is not on it
    r = subprocess.run([*dse, "latency", "--backbone", "mynets:tiny_net", "--input-size", "8",
                        "--exits", "1", "--json"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backbone"] == "mynets:tiny_net"
    # --shift module:fn is accepted (the next error is the missing config, not the shift) ...
    r = subprocess.run([*dse, "finetune", "--config", "none.yaml", "--shift", "mynets:invert"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "none.yaml" in r.stderr and "shift" not in r.stderr
    # ... and one that does not import is one clear line
    r = subprocess.run([*dse, "finetune", "--config", "none.yaml", "--shift", "nomod:fn"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: shift nomod:fn: cannot import module 'nomod'")
    # the lookup leaves sys.path as it was
    code = ("import os, sys; from dse.finetune.shifts import apply_shift; import torch; "
            "before = list(sys.path); x = torch.rand(1, 1, 4, 4); "
            "assert torch.allclose(apply_shift('mynets:invert', x), 1 - x); "
            "assert sys.path == before")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
