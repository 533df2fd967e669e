from __future__ import annotations

import pytest

from dse.cost.flops import backbone_macs
from dse.errors import ConfigError, UnknownNameError
from dse.models.backbones import build_backbone
from dse.models.placement import PLACEMENTS, parse_positions, place, target_fractions


def test_rule_formulas_exactly():
    assert target_fractions("pareto", 3) == pytest.approx([0.2, 0.36, 0.488])
    assert target_fractions("fine", 2) == pytest.approx([0.05, 0.0975])
    assert target_fractions("golden", 3) == pytest.approx([0.618 ** 3, 0.618 ** 2, 0.618])
    assert target_fractions("linear", 3) == pytest.approx([0.25, 0.5, 0.75])
    assert target_fractions("quadratic", 3) == pytest.approx([0.0625, 0.25, 0.5625])


# EENets thesis (Demir 2019) cost percents of exits placed on ResNet-110.
THESIS = {
    ("pareto", 6): [21, 40, 53, 62, 70, 74],
    ("golden", 6): [6, 10, 15, 24, 40, 66],
    ("fine", 10): [6, 10, 14, 19, 23, 27, 32, 36, 40, 44],
    ("linear", 10): [10, 19, 27, 40, 49, 57, 66, 74, 83, 91],
}


@pytest.fixture(scope="module")
def resnet110_fractions():
    return backbone_macs(build_backbone("resnet110", num_classes=10), (3, 32, 32)).cum_fractions


@pytest.mark.parametrize("rule, n", sorted(THESIS))
def test_resnet110_placement_near_thesis(resnet110_fractions, rule, n):
    p = place(rule, n, resnet110_fractions)
    assert len(p.blocks) == n and p.dropped == 0
    got = [100 * f for f in p.fractions]
    assert max(abs(a - b) for a, b in zip(got, THESIS[rule, n])) <= 5, got


FRACTIONS = [0.1, 0.3, 0.5, 0.7, 1.0]  # 5 blocks: attach points are blocks 0..3


def test_snapping_to_nearest_attach_point_and_achieved_fractions():
    p = place("linear", 2, FRACTIONS)  # targets 1/3, 2/3
    assert p.blocks == (1, 3) and p.fractions == (0.3, 0.7)
    assert p.target_fractions == pytest.approx((1 / 3, 2 / 3))


def test_duplicates_and_final_block_dropped():
    p = place("fine", 3, FRACTIONS)  # 0.05, 0.0975, 0.1426 all snap to block 0
    assert p.blocks == (0,) and p.dropped == 2
    p = place("explicit", 0, FRACTIONS, [0.95])  # the final block is never an attach point
    assert p.blocks == (3,)


def test_explicit_positions():
    assert place("explicit", 0, FRACTIONS, [2, 0, 2]).blocks == (0, 2)
    assert place("explicit", 0, FRACTIONS, parse_positions("0.31, 0.69")).blocks == (1, 3)
    assert parse_positions("1,3") == [1, 3] and parse_positions("0.5") == [0.5]


@pytest.mark.parametrize("args, message", [
    (("pareto", 5, FRACTIONS), "5 exits requested but the backbone has only 4 attach points"),
    (("explicit", 0, FRACTIONS), "needs positions"),
    (("explicit", 0, FRACTIONS, [4]), "block 4 is out of range"),
    (("explicit", 0, FRACTIONS, [1.5]), "must be in \\(0, 1\\)"),
    (("linear", 2, FRACTIONS, [0.2]), "only used with placement 'explicit'"),
])
def test_placement_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        place(*args)


def test_unknown_rule_and_bad_positions():
    with pytest.raises(UnknownNameError, match="expected one of: pareto, fine, golden"):
        place("cubic", 2, FRACTIONS)
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_positions("0.2,x")
    assert set(PLACEMENTS.names()) == {"pareto", "fine", "golden", "linear", "quadratic", "explicit"}
