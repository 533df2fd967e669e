"""The PDF: page count, every section's title, degenerate studies, subsets in pareto.csv."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from dse.report import SECTIONS, build_pages, render_report, study_frames, write_report
from dse.report.pdf import write_png, write_subsets

NOW = dt.datetime(2025, 1, 2, 3, 4)


def test_fake_study_report(fake_study, tmp_path, pdf):
    path = write_report(fake_study, tmp_path, now=NOW)
    assert path == tmp_path / "report.pdf"
    assert pdf.pages(path) == 8  # one page per section: the front has fewer than 10 configs
    text = pdf.text(path)
    for title in SECTIONS.values():
        assert pdf.has(text, title), title
    assert "Study fake-study" in text and "jetson-nano" in text and "digits-resnet" in text
    assert pdf.has(text, "24 complete, ") and "2 failed" in text
    assert "Generated 2025-01-02 03:04 by dse" in text
    assert "Expected latency predicted on jetson-nano (ms per input)" in text
    assert "Validation accuracy (%)" in text
    assert "Fine-tuning subsets were turned off" in text
    assert not list(tmp_path.glob("*.tmp*")), "no temporary file is left behind"


def test_front_rows_are_in_the_table(fake_study, tmp_path, pdf):
    data = study_frames(fake_study, importances=False)
    text = pdf.text(write_report(fake_study, tmp_path))
    for number in data.front["number"]:
        assert f"#{number}" in text


@pytest.mark.slow
def test_many_front_configurations_paginate(study_factory, tmp_path, pdf):
    study = study_factory(n_trials=60, objectives=("accuracy", "latency_ms", "macs", "energy_mj"),
                          budget_ms=None, max_drop=None, seed=3)
    out = render_report(study, tmp_path)
    n_front = len(out.data.front)
    assert n_front > 10, "the case must need more than one page per chart"
    charts = -(-n_front // 10)
    tables = -(-n_front // 14)
    assert out.pages == pdf.pages(out.path) == 5 + 2 * charts + tables
    assert "Expected energy (mJ per input)" in pdf.text(out.path)


def test_tiny_study_renders_with_notes(tiny_study, tmp_path, pdf):
    path = write_report(tiny_study, tmp_path)
    text = pdf.text(path)
    assert pdf.pages(path) == 8
    assert "needs at least 2 complete" in text


def test_empty_study_renders(study_factory, tmp_path, pdf):
    path = write_report(study_factory(n_trials=0, n_failed=2), tmp_path)
    text = pdf.text(path)
    assert pdf.pages(path) == 8
    assert "No complete trial" in text and "no feasible trial" in text.lower()


def test_page_renders_to_png(fake_study, tmp_path):
    pages = build_pages(study_frames(fake_study, importances=False))
    png = write_png(tmp_path / "pareto.png", pages[1], dpi=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subsets_merge_into_pareto_csv(tmp_path):
    pd.DataFrame({"trial": [3, 7], "val_accuracy": [90.0, 95.0]}).to_csv(tmp_path / "pareto.csv",
                                                                        index=False)
    subsets = pd.DataFrame({"number": [7], "num_exits": [4], "subset": ["BFFB"],
                            "accuracy": [93.1], "entire_accuracy": [93.4],
                            "baseline_accuracy": [80.0], "ops_ratio": [0.61],
                            "best_subset": ["FFFB"], "best_subset_accuracy": [93.5]})
    written = write_subsets(tmp_path, subsets, "jitter")
    assert [p.name for p in written] == ["finetune_jitter.csv", "pareto.csv"]
    merged = pd.read_csv(tmp_path / "pareto.csv")
    assert merged["finetune_subset"].tolist()[1] == "BFFB"
    assert pd.isna(merged["finetune_subset"].tolist()[0])
    assert merged["finetune_ops_ratio"].tolist()[1] == pytest.approx(0.61)
    write_subsets(tmp_path, subsets, "jitter")  # again: columns replaced, not duplicated
    again = pd.read_csv(tmp_path / "pareto.csv")
    assert list(again.columns) == list(merged.columns)


def _subsets(number: int) -> pd.DataFrame:
    return pd.DataFrame({"number": [number], "num_exits": [4], "subset": ["BFFB"],
                         "accuracy": [93.1], "entire_accuracy": [93.4],
                         "baseline_accuracy": [80.0], "ops_ratio": [0.61],
                         "best_subset": ["FFFB"], "best_subset_accuracy": [93.5]})


def test_report_draws_the_subsets_it_is_given(fake_study, tmp_path, pdf):
    """The report runs no fine-tuning: the caller's subsets are drawn and written as given."""
    number = int(study_frames(fake_study, importances=False).front["number"].iloc[0])
    out = render_report(fake_study, tmp_path, "jitter", subsets=_subsets(number))
    text = pdf.text(out.path)
    assert "deployment shift 'jitter'" in text and "BFFB" in text
    assert [p.name for p in out.files] == ["finetune_jitter.csv"]
    assert pd.read_csv(tmp_path / "finetune_jitter.csv")["subset"].tolist() == ["BFFB"]


def test_report_says_when_no_subset_could_be_chosen(fake_study, tmp_path, pdf):
    out = render_report(fake_study, tmp_path, "jitter", subsets=_subsets(0).iloc[:0])
    assert pdf.has(pdf.text(out.path), "no front configuration with early exits could be fine-tuned")
    assert out.files == []


def test_unknown_shift_is_a_clear_error_before_any_work(fake_study, tmp_path):
    from dse.api import render_study_report
    from dse.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown shift 'blur'"):
        render_study_report(fake_study, tmp_path, shift="blur")
    assert not (tmp_path / "report.pdf").exists()
