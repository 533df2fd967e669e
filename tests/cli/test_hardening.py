"""Hostile inputs to `dse train`, `dse finetune`, `dse evaluate`, `dse profile` and click's own
parsing: each ends in one line and exit 2, nothing imported or written that should not be."""
from __future__ import annotations

import sys

import pytest
import torch
from click.testing import CliRunner

from dse.cli import cli
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, save_config
from dse.train.losses import LossSpec
from dse.train.model_file import RUN_FORMAT, RUN_VERSION


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, message: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    return lines[0]


def config_with_backbone(path, backbone: str):
    config = RunConfig(backbone=backbone, dataset="digits",
                       exits=ExitDesign(1, "pareto", None, (1,), "pool", ()),
                       training=TrainingSpec(loss=LossSpec("ce", {})),
                       policy=ExitPolicy("maxprob", (0.8,)))
    save_config(config, str(path))
    return config


@pytest.fixture
def trap_module(tmp_path, monkeypatch):
    """A module that, if ever imported, leaves a file behind."""
    marker = tmp_path / "imported"
    (tmp_path / "trap_mod.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef factory(**kw):\n    raise SystemExit(9)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("trap_mod", None)


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_a_config_cannot_name_code(tmp_path, trap_module, command):
    cfg = tmp_path / "c.yaml"
    config_with_backbone(cfg, "trap_mod:factory")
    extra = ["--shift", "jitter"] if command == "finetune" else ["--out", tmp_path / "o"]
    line = one_line_error(run(command, "--config", cfg, *extra),
                          f"{cfg}: backbone 'trap_mod:factory' names Python code")
    assert "--allow-code" in line
    assert not trap_module.exists() and "trap_mod" not in sys.modules
    assert not (tmp_path / "o").exists()


def test_allow_code_lifts_the_refusal_and_errors_do_not_blame_the_option(tmp_path):
    cfg = tmp_path / "c.yaml"
    config_with_backbone(cfg, "no_such_module_xyz:f")
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    result = run("train", "--config", cfg, "--out", tmp_path / "o", "--allow-code", "--epochs", 1,
                 "--checkpoint", weights)
    line = one_line_error(result, "backbone no_such_module_xyz:f: cannot import module")
    assert "--backbone" not in line


def test_a_saved_model_cannot_name_code(tmp_path, trap_module):
    config = config_with_backbone(tmp_path / "c.yaml", "trap_mod:factory")
    model = tmp_path / "model.pt"
    torch.save({"format": RUN_FORMAT, "version": RUN_VERSION, "config": config.to_dict(),
                "input": {"num_classes": 10, "in_channels": 1, "input_size": 8},
                "state_dict": {}}, model)
    one_line_error(run("evaluate", "--checkpoint", model, "--out", tmp_path / "ev"),
                   f"{model}: backbone 'trap_mod:factory' names Python code")
    assert not trap_module.exists() and not (tmp_path / "ev").exists()


def test_allow_code_is_documented_in_help():
    for command in ("train", "finetune", "evaluate"):
        assert "--allow-code" in run(command, "-h").output


@pytest.mark.parametrize("thresholds, message", [
    ("[7.5]", "exit_policy.thresholds must lie in [0, 1]"),
    ("[-0.1]", "exit_policy.thresholds must lie in [0, 1]"),
    ("[.nan]", "exit_policy.thresholds[0] must be a finite number, got nan"),
    ("[.inf]", "exit_policy.thresholds[0] must be a finite number, got inf"),
])
def test_thresholds_outside_the_criterion_range_are_refused(tmp_path, thresholds, message):
    cfg = tmp_path / "c.yaml"
    config_with_backbone(cfg, "digits-resnet")
    cfg.write_text(cfg.read_text().replace("thresholds: [0.8]", f"thresholds: {thresholds}"))
    assert f"thresholds: {thresholds}" in cfg.read_text()
    one_line_error(run("train", "--config", cfg, "--out", tmp_path / "o"), f"{cfg}: {message}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["train", "--lr", "nan"], ["train", "--momentum", "nan"],
                                  ["train", "--weight-decay", "inf"], ["backbone", "train", "--lr", "nan"],
                                  ["profile", "calibrate", "--name", "x", "--power-w", "inf"]])
def test_nan_options_are_usage_errors(tmp_path, args):
    cfg = tmp_path / "c.yaml"
    config_with_backbone(cfg, "digits-resnet")
    extra = ["--config", cfg] if args[0] == "train" else []
    result = run(*args, *extra)
    assert result.exit_code == 2 and "is not a finite number" in result.output, result.output


@pytest.fixture
def blocker(tmp_path):
    """A file where a folder should be: no process, root included, can write below it."""
    path = tmp_path / "file"
    path.write_text("x")
    return path


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, blocker):
    cfg = tmp_path / "c.yaml"
    config_with_backbone(cfg, "digits-resnet")
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read before the output folder is checked")
    cases = [
        (["train", "--config", cfg, "--out", blocker / "o"], "--out"),
        (["evaluate", "--checkpoint", model, "--out", blocker / "ev"], "--out"),
        (["profile", "calibrate", "--name", "b", "--quick", "--out", blocker / "b.yaml"], "--out"),
        (["report", "--study", "s", "--storage", f"sqlite:///{tmp_path / 'none.db'}",
          "--out", blocker / "r"], "--out"),
    ]
    for args, option in cases:
        line = one_line_error(run(*args), f"{option} {blocker}")
        assert "not a writable folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "file", "model.pt"]


def test_calibrate_onto_a_folder_is_refused(tmp_path):
    one_line_error(run("profile", "calibrate", "--name", "b", "--quick", "--out", tmp_path,
                       "--force"), "is a directory")


def test_a_read_only_cache_is_one_line(tmp_path, monkeypatch):
    import dse.cache

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "ro"))
    monkeypatch.setattr(dse.cache.tempfile, "mkstemp", refuse)
    with pytest.raises(dse.cache.ConfigError, match="is not writable .*set DSE_CACHE"):
        dse.cache.cache_dir("features")


def test_profile_written_atomically_and_checked(tmp_path):
    from dse.cost.calibrate import write_profile
    from dse.cost.profiles import load_profile

    profile = load_profile("jetson")
    out = write_profile(profile, tmp_path / "jetson-nano.yaml", header="copy")
    assert load_profile(str(out)).name == "jetson-nano"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jetson-nano.yaml"]


@pytest.mark.parametrize("args, message", [
    (["nope"], "No such command 'nope'. (see 'dse -h')"),
    (["--bogus"], "No such option '--bogus'. (see 'dse -h')"),
    (["search", "--trials", "0"], "Invalid value for '--trials': 0 is not in the range x>=1."),
    (["train"], "Missing option '--config'. (see 'dse train -h')"),
    (["profile", "show"], "Missing argument 'NAME'. (see 'dse profile show -h')"),
    (["evaluate", "--checkpoint", "x.pt", "--runtime"], "Option '--runtime' requires an argument."),
])
def test_usage_errors_are_one_line(args, message):
    result = CliRunner().invoke(cli, args, prog_name="dse")
    one_line_error(result, message)


def test_a_group_without_command_still_shows_its_help():
    result = CliRunner().invoke(cli, ["profile"], prog_name="dse")
    assert "Usage: dse profile" in result.output and "calibrate" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch joint run from scratch on digits (seconds; no cached backbone needed)."""
    from dse.data import load_dataset
    from dse.train.full import train_config
    from dse.train.options import TrainOptions

    root = tmp_path_factory.mktemp("trained")
    config = RunConfig(backbone="digits-resnet", dataset="digits",
                       exits=ExitDesign(1, "pareto", None, (2,), "pool", ()),
                       training=TrainingSpec(loss=LossSpec("ce", {}), lr=0.03, batch_size=512),
                       policy=ExitPolicy("maxprob", (0.8,)),
                       provenance=(("profile", "jetson-nano"),))
    save_config(config, str(root / "c.yaml"))
    train_config(config, root / "run", TrainOptions(mode="joint", epochs=1, init="scratch"),
                 splits=load_dataset("digits", seed=0), log=None, progress=False)
    return root


def test_evaluate_with_an_unknown_runtime_exits_2(trained):
    model = trained / "run" / "model.pt"
    one_line_error(run("evaluate", "--checkpoint", model, "--runtime", "nope", "--out",
                       trained / "ev1"), "profile 'jetson-nano' has no runtime 'nope'")
    assert not (trained / "ev1").exists()


@pytest.mark.parametrize("content, message", [
    (b"garbage", "not a readable torch checkpoint (the weights-only reader refused it"),
    (b"\x80\x02garbage", "not a readable torch checkpoint"),
    (b"", "the file is empty or truncated"),
    ("pickle", "the weights-only reader refused it: not tensors and plain data"),
    ("foreign", "is not a dse train checkpoint of this run (KeyError)"),
    ("list", "is not a dse train checkpoint of this run (TypeError)"),
])
def test_resume_from_a_corrupt_or_foreign_last_pt_is_one_line(trained, tmp_path, content, message):
    import pickle

    out = tmp_path / "run"
    out.mkdir()
    last = out / "last.pt"
    if content == "pickle":
        last.write_bytes(pickle.dumps({"x": ValueError("a class")}))
    elif content == "foreign":
        torch.save({"epoch": 3, "model": {}}, last)
    elif content == "list":
        torch.save([1, 2], last)
    else:
        last.write_bytes(content)
    before = sorted(p.name for p in out.iterdir())
    line = one_line_error(run("train", "--config", trained / "c.yaml", "--out", out, "--resume",
                              "--from-scratch", "--mode", "joint"), message)
    assert str(last) in line and "weights_only" not in line
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("payload", [
    {"format": RUN_FORMAT, "version": RUN_VERSION},
    {"format": RUN_FORMAT, "version": RUN_VERSION, "input": [1], "state_dict": {}},
    {"format": RUN_FORMAT, "version": RUN_VERSION, "input": {"num_classes": 10}, "state_dict": {}},
])
def test_a_damaged_trained_model_is_one_line(tmp_path, payload):
    model = tmp_path / "model.pt"
    torch.save(payload, model)
    one_line_error(run("evaluate", "--checkpoint", model, "--out", tmp_path / "ev"),
                   f"checkpoint {model}: a 'dse-multiexit' file without its input sizes")


def test_a_message_with_newlines_is_still_one_line(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("name: [a,\n  b: c\n")
    result = run("profile", "show", bad)
    one_line_error(result, f"{bad}: invalid YAML")
