"""``dse report``: rebuilds PDF, CSVs and configs from the storage; errors exit 2 with one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dse.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [*args, "--threads", "1"])


def stored_study(study_factory, folder, checkpoint=None, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    study = study_factory(name="fake", storage=f"sqlite:///{folder / 'study.db'}", **kwargs)
    if checkpoint is not None:
        study.set_user_attr("checkpoint", checkpoint)
    return study


@pytest.mark.slow
def test_report_from_storage(study_factory, tmp_path, pdf):
    out = tmp_path / "reports" / "fake"
    stored_study(study_factory, out, n_trials=12)
    res = run("report", "--study", "fake", "--out", str(out), "--shift", "none", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["pages"] == 8 and info["report"] == str(out / "report.pdf")
    assert (out / "trials.csv").is_file() and (out / "pareto.csv").is_file()
    assert len(info["configs"]) == len(info["front"]) > 0
    assert pdf.pages(out / "report.pdf") == 8
    assert info["subsets"] is None


def test_report_says_where_it_wrote_once(study_factory, tmp_path):
    out = tmp_path / "fake"
    stored_study(study_factory, out, n_trials=6)
    res = run("report", "--study", "fake", "--out", str(out), "--shift", "none")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("report.pdf") == 1 and res.stdout.startswith("study fake: ")
    assert "report.pdf" not in res.stderr


@pytest.mark.slow
def test_report_with_shift_chooses_subsets(study_factory, tmp_path, pdf, digits_checkpoint):
    out = tmp_path / "fake"
    stored_study(study_factory, out, checkpoint=digits_checkpoint, n_trials=8, seed=1)
    res = run("report", "--study", "fake", "--out", str(out), "--shift", "jitter", "--steps", "2",
              "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    subsets = info["subsets"]
    assert [s["number"] for s in subsets] == info["front"]
    assert all(len(s["subset"]) == s["num_exits"] for s in subsets)
    front = pd.read_csv(out / "pareto.csv")
    assert front["finetune_subset"].tolist() == [s["subset"] for s in subsets]
    assert (front["finetune_shift"] == "jitter").all()
    assert (out / "finetune_jitter.csv").is_file()
    text = pdf.text(out / "report.pdf")
    assert "deployment shift 'jitter'" in text and subsets[0]["subset"] in text
    for s in subsets:   # the probe's evidence is in every row, with a warning when it failed
        assert s["estimated_gap_se"] >= 0 and "rule_subset" in s and "warning" in s
        assert s["original_accuracy"] is not None


def test_missing_database(tmp_path):
    res = run("report", "--study", "nope", "--out", str(tmp_path / "x"))
    assert res.exit_code == 2
    assert "study.db: no such file; run 'dse search --study nope' first" in res.output


def test_unknown_study_lists_the_stored_ones(study_factory, tmp_path):
    stored_study(study_factory, tmp_path, n_trials=2)
    res = run("report", "--study", "other", "--out", str(tmp_path))
    assert res.exit_code == 2
    assert "no such study in the storage (it holds: fake)" in res.output


def test_unknown_shift(tmp_path):
    res = run("report", "--study", "fake", "--out", str(tmp_path), "--shift", "blur")
    assert res.exit_code == 2
    assert "Invalid value for '--shift'" in res.output
