"""The report's title page states the latency model's error on the chosen profile (issue 13)."""
from __future__ import annotations

from dse.report.pages import _model_error


def test_title_states_the_error_on_published_rows():
    line = _model_error({"profile": "jetson-nano", "runtime": "tensorrt-fp16"})
    assert line.startswith("error on jetson-nano/tensorrt-fp16: median ")
    assert "published batch-1 rows" in line


def test_title_says_not_validated_without_rows_or_profile():
    assert _model_error({"profile": "jetson-nano", "runtime": "tensorrt-fp32"}).startswith(
        "not validated on jetson-nano/tensorrt-fp32")
    assert _model_error({"profile": "no-such-board"}) == (
        "not validated (no-such-board could not be loaded)")
    assert _model_error({}) == "not validated (no profile recorded)"
