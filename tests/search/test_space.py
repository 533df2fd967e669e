"""Search spaces: loading, validation errors (one line naming file and key), encodings."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from dse.errors import ConfigError
from dse.search.dims import Choice, Fixed, Range, parse_dim
from dse.search.space import load_space, parse_space, space_size

DATA = Path(__file__).parent / "data"
MINIMAL = {"exits": {"count": {"low": 1, "high": 3}}}


def write(tmp_path: Path, raw) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return str(path)


@pytest.mark.parametrize("name", ["default", "eenet", "ptee"])
def test_shipped_spaces_load(name):
    space = load_space(name)
    assert space.max_exits >= 1
    assert space.file.endswith(f"search_spaces/{name}.yaml")
    assert space.param("exits").dim == Range(1, 4, integer=True)


def test_default_space_has_every_dimension():
    names = {p.name for p in load_space("default").searched}
    for expected in ("exits", "placement", "position_1", "branch", "convx_depth", "convx_width",
                     "loss", "ce_weights", "eenet_lam", "eenet_version", "kd_alpha",
                     "kd_temperature", "dense_kd_lam", "isc", "criterion", "threshold_maxprob",
                     "threshold_entropy", "threshold_learned", "steps", "lr", "labels"):
        assert expected in names
    assert "explicit" in load_space("default").param("placement").dim.values()


def test_defaults_fill_missing_sections(tmp_path):
    space = load_space(write(tmp_path, MINIMAL))
    assert [p.name for p in space.searched] == ["exits", "threshold_maxprob"]
    assert space.param("threshold_maxprob").dim == Range(0.5, 0.999)
    c = space.decode({"exits": 2, "threshold_maxprob": 0.8})
    assert (c.exits.placement, c.exits.branch, c.training.loss.name, c.policy.criterion,
            c.policy.thresholds) == (
        "pareto", "pool", "ce", "maxprob", (0.8,))
    assert (c.training.steps, c.training.lr, c.training.labels) == (300, 3e-3, "ground_truth")


@pytest.mark.parametrize("raw, message", [
    ({"exits": {"count": {"low": 1, "high": 3}, "colour": 1}}, "exits.colour is not a known key"),
    ({**MINIMAL, "branch": {"type": []}}, "branch.type must not be an empty list"),
    ({"exits": {"count": {"low": 4, "high": 2}}}, "exits.count needs low <= high, got low=4, high=2"),
    ({"exits": {"count": "three"}}, "exits.count must be an integer, got 'three'"),
    ({"exits": {"count": 0}}, "exits.count must be >= 1, got 0"),
    ({**MINIMAL, "branch": {"type": ["pool", "wide"]}}, "branch.type[1] must be a branch type"),
    ({**MINIMAL, "branch": {"type": "convx", "convx": {"depht": 2}}},
     "branch.convx.depht is not a parameter of branch 'convx'"),
    ({**MINIMAL, "loss": {"name": "kd", "kd": {"alpha": {"low": 0.5, "high": 1.5}}}},
     "loss.kd.alpha.high must be in [0, 1], got 1.5"),
    ({**MINIMAL, "loss": {"name": "ce", "ce": {"weights": ["uniform", [1, 2]]}}},
     "loss.ce.weights choices must be single values, got [1, 2]"),
    ({**MINIMAL, "exit_policy": {"threshold": {"maxprob": {"low": 0.5, "high": 1.2}}}},
     "exit_policy.threshold.maxprob.high must be <= 1, got 1.2"),
    ({**MINIMAL, "exit_policy": {"thresholds": "each"}}, "exit_policy.thresholds must be one of"),
    ({**MINIMAL, "training": {"lr": {"low": 0, "high": 0.1, "log": True}}},
     "training.lr is a log range and needs low > 0"),
    ({**MINIMAL, "training": {"steps": [100, 100]}}, "training.steps lists 100 twice"),
    ({**MINIMAL, "training": {"steps": {"low": 10, "high": 20, "size": 3}}},
     "training.steps.size is not a known key"),
    ({"exits": {"count": 2, "positions": {"low": 0.1, "high": 0.5}}},
     "exits.positions is only used when placement includes 'explicit'"),
    ([1, 2], "must be a mapping"),
])
def test_bad_space_names_file_and_key(tmp_path, raw, message):
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    text = str(err.value)
    assert text.startswith(path) and message in text, text
    assert "\n" not in text


def test_missing_count_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"exits.count is required"):
        load_space(write(tmp_path, {"exits": {}}))
    with pytest.raises(ConfigError, match="no such search space"):
        load_space("nonexistent")
    with pytest.raises(ConfigError, match="no such file"):
        load_space(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_space(write(tmp_path, "exits: [1, 2\n"))


def test_parse_dim_forms():
    check = lambda v, w: v  # noqa: E731
    assert parse_dim(3, "k", check) == Fixed(3)
    assert parse_dim([3], "k", check) == Fixed(3)
    assert parse_dim(["a", "b"], "k", check) == Choice(("a", "b"))
    assert parse_dim({"low": 1, "high": 3}, "k", check) == Range(1, 3, integer=True)
    assert parse_dim({"low": 1, "high": 3}, "k", check, real=True) == Range(1.0, 3.0)
    assert parse_dim({"low": 0.2, "high": 0.5, "step": 0.3}, "k", check).values() == (0.2, 0.5)
    assert parse_dim({"low": 2, "high": 2}, "k", check) == Fixed(2)
    with pytest.raises(ConfigError, match="cannot have both"):
        parse_dim({"low": 1, "high": 2, "log": True, "step": 1}, "k", check)


def test_decode_ignores_parameters_that_do_not_apply():
    space = load_space("default")
    params = {"exits": 2, "placement": "explicit", "position_1": 0.7, "position_2": 0.2,
              "position_3": 0.9, "position_4": 0.1, "branch": "convx", "convx_depth": 2,
              "convx_width": 8, "loss": "kd", "ce_weights": "increasing", "eenet_version": "v2",
              "eenet_lam": 0.1, "kd_alpha": 0.3, "kd_temperature": 2.0, "dense_kd_lam": 0.5,
              "dense_kd_temperature": 3.0, "isc": True, "criterion": "entropy",
              "threshold_maxprob": 0.9, "threshold_entropy": 0.2, "threshold_learned": 0.5,
              "steps": 100, "lr": 0.01, "labels": "pseudo"}
    c = space.decode(params)
    assert c.exits.positions == (0.2, 0.7)  # sorted; position_3/4 ignored with two exits
    assert c.exits.branch_params == (("depth", 2), ("width", 8))
    assert (c.training.loss.name, c.training.loss.kwargs, c.training.loss.isc) == ("kd", {"alpha": 0.3, "temperature": 2.0}, True)
    assert (c.policy.criterion, c.policy.thresholds) == ("entropy", (0.2,))
    assert (c.training.labels, c.training.steps, c.training.optimizer, c.training.batch_size) == ("pseudo", 100, "adam", 128)


def _asked(space, conditional: bool, seed: int = 0) -> set[str]:
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    candidate = space.suggest(trial, conditional=conditional)
    return set(trial.params), candidate


def test_fixed_length_encoding_asks_every_parameter():
    space = load_space("default")
    asked, _ = _asked(space, conditional=False)
    assert asked == {p.name for p in space.searched}


def test_conditional_encoding_asks_only_what_applies():
    space = load_space("default")
    for seed in range(20):
        asked, c = _asked(space, conditional=True, seed=seed)
        assert ("convx_depth" in asked) == (c.exits.branch == "convx")
        assert ("kd_alpha" in asked) == (c.training.loss.name == "kd")
        explicit = c.exits.placement == "explicit"
        assert {f"position_{i}" for i in range(1, 5)} & asked == (
            {f"position_{i}" for i in range(1, c.exits.count + 1)} if explicit else set())
        assert {n for n in asked if n.startswith("threshold_")} == {f"threshold_{c.policy.criterion}"}


def test_per_exit_thresholds(tmp_path):
    path = tmp_path / "per_exit.yaml"
    path.write_text("exits: {count: {low: 1, high: 4}}\nexit_policy:\n  criterion: maxprob\n"
                    "  thresholds: per_exit\n  threshold: {maxprob: {low: 0.6, high: 0.999}}\n")
    space = load_space(path)
    params = {p.name: p.dim.values()[0] if not hasattr(p.dim, "low") else p.dim.low
              for p in space.searched}
    params.update({"exits": 3, "threshold_maxprob_1": 0.7, "threshold_maxprob_2": 0.8,
                   "threshold_maxprob_3": 0.9, "threshold_maxprob_4": 0.95})
    assert space.decode(params).policy.thresholds == (0.7, 0.8, 0.9)


def test_candidates_of_a_discrete_space_are_counted_without_inert_parameters():
    # 7 placements (pareto x 2 counts; explicit: 2 one-exit + 3 sorted two-exit positions)
    # x 2 branches x (10 maxprob + 10 entropy thresholds) = 280
    space = load_space(Path(__file__).parents[2] / "benchmarks" / "search_quality_space.yaml")
    assert space_size(space) == 280
    tiny = load_space(DATA / "tiny.yaml")  # continuous thresholds: not enumerable
    with pytest.raises(ConfigError, match="no finite list"):
        space_size(tiny)


def test_space_round_trips_through_plain_data():
    space = load_space("default")
    again = parse_space(space.to_plain(), space.file)
    assert again.params == space.params and again.thresholds == space.thresholds
