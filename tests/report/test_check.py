"""``dse report --check K``: full training of the K best front configurations vs the proxy."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dse.api._check import best_front, weighted_latency
from dse.cli import cli
from dse.errors import ConfigError
from dse.report.check import TITLE, summary_lines
from dse.report.data import study_frames


def run(*args):
    return CliRunner().invoke(cli, [*args, "--threads", "1"])


def test_weighted_latency_by_hand():
    # 50 % leave at 1 ms, 30 % at 2 ms, 20 % at 4 ms -> 0.5 + 0.6 + 0.8 = 1.9 ms
    assert weighted_latency([0.5, 0.3, 0.2], [1.0, 2.0, 4.0]) == pytest.approx(1.9)
    with pytest.raises(ConfigError, match="2 exit fractions for 3"):
        weighted_latency([0.5, 0.5], [1.0, 2.0, 4.0])


def test_best_front_takes_the_most_accurate_front_trials(study_factory):
    data = study_frames(study_factory(n_trials=12), importances=False)
    best = best_front(data, 2)
    assert best["accuracy"].tolist() == sorted(data.front["accuracy"], reverse=True)[:2]
    assert best["on_front"].all()
    with pytest.raises(ConfigError, match=">= 1"):
        best_front(data, 0)


def test_summary_lines_say_what_was_measured():
    lines = summary_lines({"spearman": 0.9, "kendall": 0.8, "front_kept": 0.75, "epochs": 5,
                           "thresholds": "the trial's own (not re-tuned)",
                           "seed_noise": {"test_accuracy_mean_abs_diff": 0.4,
                                          "test_accuracy_max_abs_diff": 1.1}})
    assert "Spearman 0.900, Kendall 0.800" in lines[0] and "75 %" in lines[0]
    assert "0.40 points on average (max 1.10)" in lines[0] and "5 epochs" in lines[1]


@pytest.mark.slow  # about 20 s on a quiet 2-core machine, minutes on a busy one
def test_report_check_trains_the_best_front_config(study_factory, tmp_path, pdf,
                                                   digits_checkpoint):
    out = tmp_path / "fake"
    out.mkdir()
    study = study_factory(name="fake", storage=f"sqlite:///{out / 'study.db'}", n_trials=8, seed=1)
    study.set_user_attr("checkpoint", digits_checkpoint)
    args = ("report", "--study", "fake", "--out", str(out), "--check", "1", "--check-epochs", "1",
            "--json")
    res = run(*args)
    assert res.exit_code == 0, res.output
    check = json.loads(res.stdout)["check"]
    best = best_front(study_frames(study, importances=False), 1).iloc[0]
    (row,) = check["configs"]
    assert row["number"] == int(best["number"]) and row["on_front"]
    assert row["proxy_accuracy"] == pytest.approx(best["accuracy"])
    metrics = json.loads((out / "check" / f"trial_{row['number']}" / "seed_0" /
                          "metrics.json").read_text())
    assert row["full_test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert row["full_test_latency_ms"] == pytest.approx(
        weighted_latency(metrics["test"]["exit_fractions"], best["exit_latency_ms"]))
    assert check["n_configs"] == 1 and check["front_kept"] == 1.0  # alone, nothing dominates it
    assert check["spearman"] is None and check["epochs"] == 1
    assert check["thresholds"] == ("re-tuned after full training" if row["retuned"]
                                   else "the trial's own (not re-tuned)")
    assert json.loads((out / "check.json").read_text())["n_configs"] == 1
    assert pd.read_csv(out / "check.csv")["number"].tolist() == [row["number"]]
    assert pdf.pages(out / "report.pdf") == 9 and pdf.has(pdf.text(out / "report.pdf"), TITLE)
    again = run(*args)  # a finished check run is reused, not refused
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["check"]["configs"][0] == row


def test_report_check_rejects_bad_seeds(tmp_path):
    res = run("report", "--study", "x", "--out", str(tmp_path), "--check", "1",
              "--check-seeds", "0,a")
    assert res.exit_code == 2 and "comma-separated integers" in res.output
