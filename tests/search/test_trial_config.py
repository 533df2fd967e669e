"""``dse config --study S --trial N``: any trial's configuration, kept by later cleanups; the
cleanup of ``dse search`` / ``dse report`` (``write_outputs``) deletes only configs it wrote."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.design import load_config
from dse.search.export import write_outputs
from dse.search.storage import open_storage, sqlite_url
from dse.search.study import load_study
from dse.written import MANIFEST, written_files

STUDY = "t16"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_any_trial_config_is_written_and_survives_cleanup(tmp_path, search_args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports" / STUDY
    r = run(*search_args(out, "--study", STUDY, trials=8))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "trials.csv").open()))
    off_front = [int(x["trial"]) for x in rows if x["state"] == "COMPLETE" and x["pareto"] == "False"]
    front = [int(x["trial"]) for x in rows if x["pareto"] == "True"]
    assert off_front and front, rows  # the seeded study has both
    n = off_front[0]

    r = run("config", "--study", STUDY, "--trial", n, "--json")  # default storage and path
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    path = out / "configs" / f"trial_{n}.yaml"
    assert (tmp_path / got["config"]).resolve() == path.resolve() and got["front"] is False and got["state"] == "COMPLETE"
    study = load_study(open_storage(sqlite_url(out / "study.db")), STUDY)
    stored = study.trials[n].user_attrs["config"]
    cfg = load_config(str(path))
    assert list(cfg.policy.thresholds) == stored["exit_policy"]["thresholds"]
    assert list(cfg.exits.blocks) == stored["exits"]["blocks"]
    assert f"trial {n} (COMPLETE, not on the Pareto front)" in path.read_text()

    # a user's own file in the same folder, then the cleanup dse search and dse report run
    (out / "configs" / "mine.yaml").write_text("keep: me\n")
    write_outputs(study, out)
    assert path.is_file() and (out / "configs" / "mine.yaml").read_text() == "keep: me\n"
    assert f"trial_{n}.yaml" in written_files(out / "configs", "kept")
    r = run(*search_args(out, "--study", STUDY, trials=10))  # more trials: the front may move
    assert r.exit_code == 0, r.output
    assert path.is_file() and (out / "configs" / "mine.yaml").is_file()

    # a front trial to an explicit file
    r = run("config", "--study", STUDY, "--trial", front[0], "--out", tmp_path / "x" / "f.yaml")
    assert r.exit_code == 0, r.output
    assert "on the Pareto front" in r.stdout and (tmp_path / "x" / "f.yaml").is_file()


def test_config_errors_exit_2_and_touch_nothing(tmp_path, search_args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports" / STUDY
    assert run(*search_args(out, "--study", STUDY, trials=2)).exit_code == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text("my notes\n")
    cases = [
        (["--study", STUDY, "--trial", 99], "--trial 99: study t16 has no such trial (it holds trials 0 to 1)"),
        (["--study", STUDY, "--trial", 0, "--out", mine], "exists and was not written by dse"),
        (["--study", "nosuch", "--trial", 0], "reports/nosuch/study.db: no such file"),
        (["--study", "../x", "--trial", 0], "--study must be a name"),
        (["--study", STUDY, "--trial", -1], "--trial"),
    ]
    for args, message in cases:
        r = run("config", *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
    assert mine.read_text() == "my notes\n"
    r = run("config", "--study", STUDY, "--trial", 0, "--out", mine, "--force")
    assert r.exit_code == 0, r.output
    assert load_config(str(mine)).backbone


def test_cleanup_never_replaces_a_users_file_named_like_a_front_config(tmp_path, search_args):
    out = tmp_path / "study"
    assert run(*search_args(out, "--study", STUDY, trials=2)).exit_code == 0
    configs = out / "configs"
    name = sorted(written_files(configs))[0]
    # the user's own file under a front config's name (not in dse's record)
    (configs / name).write_text("mine: 1\n")
    (configs / MANIFEST).write_text(json.dumps({"files": sorted(written_files(configs) - {name})}))
    study = load_study(open_storage(sqlite_url(out / "study.db")), STUDY)
    result = write_outputs(study, out)
    assert (configs / name).read_text() == "mine: 1\n"
    assert result["not_replaced"] == [str(configs / name)]
    assert name not in written_files(configs)
