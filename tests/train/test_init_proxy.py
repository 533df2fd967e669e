"""``dse train --init proxy``: the exits start from the ones the search proxy-trained."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from dse.api import train
from dse.cli import cli
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, save_config
from dse.errors import ConfigError
from dse.finetune.context import context_for, train_original
from dse.train.model_file import load_model


@pytest.fixture
def config_file(tmp_path, digits_checkpoint):
    config = RunConfig("digits-resnet", "digits", ExitDesign(2, blocks=(1, 3), branch="pool"),
                       training=TrainingSpec(steps=40, lr=0.01),
                       policy=ExitPolicy("maxprob", (0.9,)), checkpoint=digits_checkpoint,
                       provenance=(("proxy_seed", 1234),))
    path = tmp_path / "configs" / "trial_0.yaml"
    path.parent.mkdir()
    save_config(config, str(path))
    return config, str(path)


def _branch_weights(modules):
    return [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in modules]


def test_training_starts_from_the_search_exits(config_file, tmp_path):
    config, path = config_file
    proxy = _branch_weights(train_original(config, context_for(config)).classifiers[:-1])
    # a vanishing learning rate: what the model file holds is where training started
    result = train(path, epochs=1, init="proxy", lr=1e-12, augment=False, feature_cache=False,
                   out=tmp_path / "proxy")
    started = _branch_weights(load_model(result.model_path).model.branches)
    for p, s in zip(proxy, started):
        for key in p:
            assert torch.allclose(p[key], s[key], atol=1e-6), key
    fresh = train(path, epochs=1, lr=1e-12, augment=False, feature_cache=False,
                  out=tmp_path / "fresh")
    other = _branch_weights(load_model(fresh.model_path).model.branches)
    assert not torch.allclose(proxy[0]["classifier.weight"], other[0]["classifier.weight"])


def test_init_proxy_is_a_command_option_and_refuses_imta(config_file):
    _, path = config_file
    res = CliRunner().invoke(cli, ["train", "--config", path, "--init", "proxy",
                                   "--recipe", "imta", "--epochs", "1"])
    assert res.exit_code == 2 and "--init proxy" in res.output
    with pytest.raises(ConfigError, match="init must be one of"):
        train(path, epochs=1, init="nope")
