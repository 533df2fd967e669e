"""Validation statistics (dse/cost/validation_stats.py) and a smoke run of the measured
early-exit path (dse/cost/validate.py)."""
from __future__ import annotations

import pytest

from dse.cost.profiles import load_profile
from dse.cost.validate import Case, ValidationSettings, default_cases, validate
from dse.cost.validation_stats import macs_baseline, summarize


def test_summarize_by_hand():
    s = summarize([1.05, 2.5, 2.7, 4.0], [1.0, 2.0, 3.0, 4.0])
    # errors 5 %, 25 %, 10 %, 0 %: MAPE 10 %, 3 of 4 within +-10 %, ranks 1,2,3,4 vs 1,2,3,4
    assert s == {"n": 4, "mape": 10.0, "within_10pct": 0.75, "spearman": 1.0}
    assert summarize([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])["spearman"] == -1.0


def test_macs_baseline_is_the_least_relative_squares_slope():
    slope, pred = macs_baseline([1.0, 2.0], [1.0, 4.0])
    # r = (1, 0.5): s = 1.5 / 1.25 = 1.2
    assert slope == pytest.approx(1.2) and pred == pytest.approx([1.2, 2.4])


def test_default_cases_cover_six_backbones_and_three_exit_configs():
    cases = default_cases()
    assert len({c.backbone for c in cases}) >= 6
    assert len({(c.num_exits, c.placement, c.branch) for c in cases}) >= 3


@pytest.mark.slow
def test_validate_smoke_on_the_real_early_exit_path():
    result = validate(load_profile("desktop-cpu"), settings=ValidationSettings(rounds=2, target_ms=1.0, threads=1),
                      cases=[Case("digits-resnet", 8, 2, "linear", "pool")])
    assert {"n", "mape", "within_10pct", "spearman", "rows", "baseline"} <= set(result)
    assert result["n"] == 3 == len(result["rows"])
    row = result["rows"][0]
    assert {"backbone", "exit", "block", "cum_macs", "predicted_ms", "measured_ms", "error"} <= set(row)
    assert [r["exit"] for r in result["rows"]] == [0, 1, 2]
    assert all(r["measured_ms"] > 0 for r in result["rows"])


def test_speed_check_compares_the_reference_now_with_calibration():
    """Reference samples of 100, 110 and 120 us (median 110) against a calibration at 100 us:
    ratio 1.1, no warning; at 50 us the machine runs the reference at 2.2x: a warning."""
    from dse.cost.harness import Timing
    from dse.cost.validation_stats import speed_check

    samples = [[[1e-3, 1e-3]], [[2e-3]]]
    refs = [[[100e-6, 120e-6]], [[110e-6]]]
    quiet = speed_check(Timing(samples, "median", refs, 100e-6))
    assert quiet == {"reference_now_us": 110.0, "speed_ratio": 1.1}
    moved = speed_check(Timing(samples, "median", refs, 50e-6))
    assert moved["speed_ratio"] == 2.2 and "2.20x its calibration time" in moved["warning"]
    faster = speed_check(Timing(samples, "median", refs, 140e-6))
    assert faster["speed_ratio"] == pytest.approx(0.786, abs=1e-3) and "warning" in faster
    assert speed_check(Timing(samples, "median")) == {}  # plain seconds: nothing to compare


def test_level_check_tells_a_level_shift_from_a_wrong_structure():
    """Errors of one sign with a median beyond +-10 % and the ranking intact: a warning (either
    sign); mixed signs, a small median or a broken ranking: only the median."""
    from dse.cost.validation_stats import join_warnings, level_check

    slow = level_check([0.06, 0.2, 0.27, 0.3, 0.69], spearman=0.997)
    assert slow["median_error"] == 0.27
    assert "27% too slow on the median exit and 100% of exits" in slow["warning"]
    fast = level_check([-0.15, -0.2, -0.12, -0.3, 0.01, -0.18, -0.16, -0.2, -0.14, -0.13], 0.99)
    assert "too fast" in fast["warning"] and "90% of exits" in fast["warning"]
    assert "warning" not in level_check([-0.3, 0.25, -0.2, 0.3, 0.22], 0.99)  # mixed signs
    assert "warning" not in level_check([0.05, 0.08, 0.09, 0.07], 0.99)  # within +-10 %
    assert "warning" not in level_check([0.2, 0.3, 0.25], spearman=0.5)  # structure is off
    assert "warning" in level_check([0.2, 0.3, 0.25])  # no ranking given: not checked
    assert level_check([]) == {}
    both = join_warnings({"speed_ratio": 2.2, "warning": "moved"},
                         {"median_error": 0.3, "warning": "level"})
    assert both == {"speed_ratio": 2.2, "median_error": 0.3, "warning": "moved; level"}
    assert join_warnings({"speed_ratio": 1.0}, {"median_error": 0.01}) == {"speed_ratio": 1.0,
                                                                              "median_error": 0.01}


def test_by_backbone_gives_each_network_its_median_error_and_share_within_10pct():
    from dse.cost.validation_stats import by_backbone

    rows = [{"backbone": "digits-resnet", "error": e} for e in (0.12, 0.16, 0.05, 0.14)]
    rows += [{"backbone": "resnet8", "error": e} for e in (-0.02, 0.03, -0.11)]
    rows.insert(2, {"backbone": "resnet8", "error": 0.1})  # exactly +10 %: within
    got = by_backbone(rows)
    assert list(got) == ["digits-resnet", "resnet8"]  # the order rows first name them
    assert got["digits-resnet"] == {"n": 4, "median_error": 0.13, "within": 1,
                                     "within_10pct": 0.25}
    assert got["resnet8"] == {"n": 4, "median_error": 0.005, "within": 3,
                               "within_10pct": 0.75}
    assert by_backbone([]) == {}
