"""Search dimensions declared once, on the design's dataclass fields (dse/design/knobs.py)."""
from __future__ import annotations

import optuna
import pytest

from dse.design import ExitDesign, RunConfig, TrainingSpec, load_config, save_config
from dse.design.knobs import knob_fields
from dse.design.types import Design
from dse.errors import ConfigError
from dse.search.objective import structure_key
from dse.search.space import KNOBS, parse_space

MINIMAL = {"exits": {"count": 2}}


def test_every_knob_is_a_parameter_of_a_space_in_declaration_order_within_its_section():
    space = parse_space(MINIMAL, "x.yaml")
    names = [p.name for p in space.params]
    for kf in knob_fields(Design):
        assert kf.knob.param in names, kf.path
    for section in ("exits", "training"):
        declared = [k.knob.param for k in KNOBS.values() if k.knob.section == section]
        assert [n for n in names if n in declared] == declared


def test_a_new_dimension_is_searched_decoded_and_round_trips_through_a_config(tmp_path):
    """weight_decay was added as one knob(...) on TrainingSpec plus its use in proxy training."""
    space = parse_space({**MINIMAL, "training": {"weight_decay": {"low": 1e-5, "high": 1e-2,
                                                                  "log": True}}}, "x.yaml")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    design = space.suggest(trial)
    assert design.training.weight_decay == trial.params["weight_decay"]
    assert 1e-5 <= design.training.weight_decay <= 1e-2
    config = RunConfig.from_design(design.with_blocks((1, 3)), backbone="digits-resnet",
                                   dataset="digits")
    save_config(config, str(tmp_path / "c.yaml"))
    assert load_config(str(tmp_path / "c.yaml")) == config


def test_a_dimension_is_checked_the_same_way_in_a_space_and_a_config(tmp_path):
    with pytest.raises(ConfigError, match=r"x.yaml: training.weight_decay must be >= 0, got -1"):
        parse_space({**MINIMAL, "training": {"weight_decay": -1}}, "x.yaml")
    config = RunConfig("digits-resnet", "digits", ExitDesign(2, blocks=(1, 3)))
    path = tmp_path / "c.yaml"
    save_config(config, str(path))
    path.write_text(path.read_text().replace("weight_decay: 0.0", "weight_decay: -1"))
    with pytest.raises(ConfigError, match=r"c.yaml: training.weight_decay must be >= 0, got -1"):
        load_config(str(path))


def test_a_default_new_field_leaves_the_proxy_structure_key_as_before():
    """Studies made before weight_decay existed keep their proxy seeds and replay exactly."""
    design = Design(ExitDesign(2, branch="pool"), TrainingSpec())
    t = design.training
    before = ((1, 3), "pool", (), t.loss.name, t.loss.params, t.loss.isc, t.labels, t.steps,
              repr(float(t.lr)), t.optimizer, t.batch_size)
    assert structure_key(design, (1, 3)) == before
    decayed = Design(design.exits, TrainingSpec(weight_decay=1e-4))
    assert structure_key(decayed, (1, 3)) == before + (("weight_decay", 1e-4),)


def test_an_old_config_without_the_new_field_loads_with_its_default(tmp_path):
    config = RunConfig("digits-resnet", "digits", ExitDesign(2, blocks=(1, 3)))
    path = tmp_path / "c.yaml"
    save_config(config, str(path))
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if "weight_decay" not in line))
    assert load_config(str(path)).training.weight_decay == 0.0
