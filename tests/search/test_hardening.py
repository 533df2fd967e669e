"""Hostile inputs to `dse search` and `dse report`: names that are paths, foreign files in the
output folder, foreign studies, NaN options. Each ends in one line and exit 2, or leaves the
user's files alone."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.written import MANIFEST, replace_written, written_files

STUDY = "digits-digits-resnet-jetson-nano"


def run(*args):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", ".hidden", "", "a b", "..",
                                  "x" * 129, "tab\tname"])
def test_study_names_are_names_not_paths(tmp_path, search_args, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*search_args(tmp_path / "out"), "--study", name)
    one_line_error(result, "--study must be a name of at most 128 letters, digits")
    assert not (tmp_path / "out").exists() and not (tmp_path / "reports").exists()
    result = run("report", "--study", name)
    one_line_error(result, "--study must be a name")
    assert list(tmp_path.iterdir()) == []


def test_cleanup_removes_only_configs_dse_wrote(tmp_path, search_args):
    out = tmp_path / "study"
    assert run(*search_args(out, trials=4)).exit_code == 0
    configs = out / "configs"
    ours = written_files(configs)
    assert ours and ours == {p.name for p in configs.glob("trial_*.yaml")}
    user = {"trial_999.yaml": "mine: 1\n", "notes.yaml": "keep: me\n"}
    for name, text in user.items():
        (configs / name).write_text(text)
    # a config an earlier run wrote that has since left the front is removed
    (configs / "trial_998.yaml").write_text("old: 1\n")
    (configs / MANIFEST).write_text(json.dumps({"files": sorted(ours | {"trial_998.yaml"})}))
    result = run(*search_args(out, trials=5))
    assert result.exit_code == 0, result.output
    assert not (configs / "trial_998.yaml").exists()
    for name, text in user.items():
        assert (configs / name).read_text() == text
    assert written_files(configs) == {p.name for p in configs.glob("trial_*.yaml")} - {"trial_999.yaml"}


def test_manifest_never_reaches_outside_its_folder(tmp_path):
    outside = tmp_path / "victim.yaml"
    outside.write_text("keep\n")
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({"files": ["../victim.yaml", "/etc/passwd", ".."]}))
    assert replace_written(folder, ["trial_1.yaml"]) == []
    assert outside.read_text() == "keep\n"
    with pytest.raises(ValueError):
        replace_written(folder, ["../x.yaml"])
    (folder / MANIFEST).write_text("{not json")
    assert written_files(folder) == set()


@pytest.mark.parametrize("extra", [["--budget-ms", "nan"], ["--budget-ms", "inf"],
                                   ["--budget-ms", "-inf"], ["--max-drop", "nan"],
                                   ["--max-drop", "inf"]])
def test_nan_and_infinite_options_are_refused_before_any_trial(tmp_path, search_args, extra):
    result = run(*search_args(tmp_path / "out"), *extra)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_unwritable_out_is_refused_before_any_trial(tmp_path, search_args):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run(*search_args(blocker / "out"))
    one_line_error(result, f"--out {blocker / 'out'}: not a writable folder")


def test_report_on_a_study_not_made_by_dse_is_one_line(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="plain", storage=url, directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=3)
    study.set_user_attr("objectives", "not a list")
    result = run("report", "--study", "plain", "--out", str(tmp_path))
    one_line_error(result, "study 'plain' in sqlite:///")
    assert "is not a dse study" in result.output
    assert {p.name for p in tmp_path.iterdir()} <= {"study.db", "study.db-wal", "study.db-shm"}
