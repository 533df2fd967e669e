"""End to end: ``dse search`` with its defaults writes a report whose every section renders."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.report import SECTIONS


@pytest.mark.slow
def test_default_search_writes_the_report(tmp_path, pdf):
    out = tmp_path / "default"
    res = CliRunner().invoke(cli, ["search", "--trials", "4", "--out", str(out), "--threads", "1",
                                   "--backbone-epochs", "2", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["report"] == str(out / "report.pdf")
    assert pdf.pages(out / "report.pdf") == 8
    text = pdf.text(out / "report.pdf")
    for title in SECTIONS.values():
        assert pdf.has(text, title), title
    assert "digits-resnet" in text and "4 complete" in text
    # issue 16: the subsets page is filled by default (shift random), every config has an exit
    assert "deployment shift 'random'" in text and (out / "finetune_random.csv").is_file()
