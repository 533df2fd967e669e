from __future__ import annotations

import pytest

from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, load_config, save_config
from dse.errors import ConfigError
from dse.design import LossSpec

GOOD = """\
dse_config: 1
backbone: {name: digits-resnet, checkpoint: null, input_size: 8}
dataset: digits
seed: 3
exits: {count: 2, placement: linear, blocks: [1, 3], branch: convx,
        branch_params: {depth: 2, width: 16}}
training:
  loss: {name: kd, alpha: 0.3, temperature: 4.0, isc: true}
  labels: pseudo
  steps: 50
  lr: 0.01
  optimizer: sgd
  batch_size: 32
exit_policy: {criterion: entropy, thresholds: [0.2, 0.4]}
search: {study: demo, trial: 7}
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_load_good_config(tmp_path):
    c = load_config(write(tmp_path, GOOD))
    assert c.backbone == "digits-resnet" and c.input_size == 8 and c.seed == 3
    assert c.exits == ExitDesign(2, "linear", None, (1, 3), "convx", (("depth", 2), ("width", 16)))
    assert c.training.loss.name == "kd" and c.training.loss.isc is True
    assert c.training.loss.kwargs == {"alpha": 0.3, "temperature": 4.0}
    assert (c.training.labels, c.training.steps, c.training.optimizer) == ("pseudo", 50, "sgd")
    assert c.policy == ExitPolicy("entropy", (0.2, 0.4))
    assert dict(c.provenance) == {"study": "demo", "trial": 7}


def test_round_trip(tmp_path):
    config = RunConfig(
        backbone="resnet20", dataset="cifar10:/data/c10", checkpoint="/ck/r20.pt", input_size=32,
        exits=ExitDesign(3, "pareto", None, (2, 3, 4), "bnpool"),
        training=TrainingSpec(LossSpec("eenet", {"version": "v2", "lam": 0.5}), steps=10),
        policy=ExitPolicy("learned", (0.5, 0.6, 0.7)), provenance=(("trial", 3),),
    )
    path = str(tmp_path / "rt.yaml")
    save_config(config, path, header="exported by a test")
    assert open(path).read().startswith("# exported by a test\n")
    assert load_config(path) == config


@pytest.mark.parametrize("old, new, message", [
    ("seed: 3", "seed: 3\ncolour: red", "c.yaml: colour is not a known key"),
    ("count: 2,", "count: -1,", "c.yaml: exits.count must be >= 1, got -1"),
    ("placement: linear", "placement: cubic", "exits.placement must be a placement rule .pareto, fine"),
    ("branch: convx", "branch: dense", "exits.branch must be a branch type .plain, pool"),
    ("width: 16", "width: 0", "width must be an integer >= 1, got 0"),
    ("width: 16", "height: 3", "takes no parameter 'height'"),
    ("blocks: [1, 3]", "blocks: [3, 1]", "exits.blocks must be strictly increasing"),
    ("alpha: 0.3", "alpha: 3", "alpha"),
    ("labels: pseudo", "labels: teacher", "training.labels must be a label source .ground_truth, pseudo., got .teacher"),
    ("lr: 0.01", "lr: 0", "training.lr must be > 0"),
    ("steps: 50", "steps: many", "training.steps must be an integer"),
    ("thresholds: [0.2, 0.4]", "thresholds: [0.2, 0.4, 0.5]", "needs 1 or 2 values"),
    ("criterion: entropy", "criterion: margin", "exit_policy.criterion must be an exit criterion"),
    ("dse_config: 1", "dse_config: 9", "dse_config must be 1, got 9"),
])
def test_config_errors_name_file_and_key(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace("[", "\\[")):
        load_config(write(tmp_path, GOOD.replace(old, new)))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "none.yaml"))
    with pytest.raises(ConfigError, match="invalid YAML at line 2"):
        load_config(write(tmp_path, "backbone: {name: x\nexits: [\n"))
    with pytest.raises(ConfigError, match="backbone is required"):
        load_config(write(tmp_path, "dataset: digits\n"))
