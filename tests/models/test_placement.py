from __future__ import annotations

import re

import pytest

from dse.cost.assemble import place_exits
from dse.cost.flops import backbone_macs
from dse.errors import ConfigError, UnknownNameError
from dse.models.backbones import build_backbone
from dse.models.placement import PLACEMENTS, parse_positions, place, target_fractions

RULES = ["pareto", "fine", "golden", "linear", "quadratic", "squared"]


def test_rule_formulas_exactly():
    assert target_fractions("pareto", 3) == pytest.approx([0.2, 0.36, 0.488])
    assert target_fractions("fine", 2) == pytest.approx([0.05, 0.0975])
    assert target_fractions("golden", 3) == pytest.approx([0.618 ** 3, 0.618 ** 2, 0.618])
    assert target_fractions("linear", 3) == pytest.approx([0.25, 0.5, 0.75])
    assert target_fractions("squared", 3) == pytest.approx([0.0625, 0.25, 0.5625])
    # our reading of quadratic: (1/(N+1))^2 .. (N/(N+1))^2, a constant factor N^(2/(N-1)) apart
    assert target_fractions("quadratic", 3) == pytest.approx([1 / 16, 3 / 16, 9 / 16])
    assert target_fractions("quadratic", 1) == pytest.approx([0.25])
    six = target_fractions("quadratic", 6)
    assert six[0] == pytest.approx(1 / 49) and six[-1] == pytest.approx(36 / 49)
    assert [b / a for a, b in zip(six, six[1:])] == pytest.approx([36 ** 0.2] * 5)


# Cost percents of the exits in the EENets thesis (Demir 2019, METU), ResNet-110 on CIFAR-10,
# as quoted in issue 14 ("What to build", item 1).
THESIS_110 = {
    ("pareto", 6): [21, 40, 53, 62, 70, 74],
    ("golden", 6): [6, 10, 15, 24, 40, 66],
    ("fine", 10): [6, 10, 14, 19, 23, 27, 32, 36, 40, 44],
    ("linear", 10): [10, 19, 27, 40, 49, 57, 66, 74, 83, 91],
    ("quadratic", 6): [2, 4, 11, 20, 40, 74],
}
# The same thesis, ResNet-20, pareto with 2 exits (quoted in issue 14, "Why", item 1).
THESIS_20 = {("pareto", 2): [24, 45]}


def _net(depth: int):
    backbone = build_backbone(f"resnet{depth}", num_classes=10)
    return backbone, backbone_macs(backbone, (3, 32, 32))


@pytest.fixture(scope="module")
def nets():
    return {d: _net(d) for d in (8, 20, 32, 44, 56, 110)}


@pytest.mark.parametrize("depth, rule, n, expected", [
    (110, *k, v) for k, v in sorted(THESIS_110.items())] + [(20, *k, v) for k, v in THESIS_20.items()])
def test_placement_matches_the_thesis_tables(nets, depth, rule, n, expected):
    backbone, macs = nets[depth]
    p = place_exits(backbone, macs, rule, n, "pool", 10)
    assert len(p.blocks) == n
    got = [100 * f for f in p.fractions]
    assert max(abs(a - b) for a, b in zip(got, expected)) <= 5, got


def test_old_quadratic_misses_the_thesis_row(nets):
    backbone, macs = nets[110]
    got = [100 * f for f in place_exits(backbone, macs, "squared", 6, "pool", 10).fractions]
    assert max(abs(a - b) for a, b in zip(got, THESIS_110["quadratic", 6])) > 5


@pytest.mark.parametrize("depth", [8, 20, 32, 44, 56, 110])
@pytest.mark.parametrize("rule", RULES)
def test_every_count_is_met_or_refused_with_how_many_fit(nets, depth, rule):
    backbone, macs = nets[depth]
    attach = len(macs.block_macs) - 2  # no stem, no final block
    fitted = 0
    for n in range(1, attach + 2):
        try:
            p = place(rule, n, macs.cum_fractions, first_attach=backbone.first_attach)
        except ConfigError as err:
            if n > attach:
                assert "attach points" in str(err)
                continue
            k = int(re.search(r"fits only (\d+) of (\d+)", str(err)).group(1))
            assert k < n
            continue
        fitted += 1
        assert len(p.blocks) == n and len(set(p.blocks)) == n
        assert list(p.blocks) == sorted(p.blocks)
        assert p.blocks[0] >= 1 and p.blocks[-1] <= attach  # never the stem or the last block
        cum = macs.cum_fractions
        for b, t, prev in zip(p.blocks, p.target_fractions, (0,) + p.blocks):
            assert cum[b] >= t  # reached ...
            # ... at the first block past the previous exit that does
            assert all(cum[c] < t for c in range(max(prev + 1, 1) if b != p.blocks[0] else 1, b))
    assert fitted >= 1


FRACTIONS = [0.05, 0.1, 0.3, 0.5, 0.7, 1.0]  # block 0 is a stem: attach points are blocks 1..4


def test_walk_takes_the_first_block_reaching_each_target_one_exit_per_block():
    p = place("linear", 2, FRACTIONS, first_attach=1)  # targets 1/3, 2/3
    assert p.blocks == (3, 4) and p.fractions == (0.5, 0.7)
    assert p.target_fractions == pytest.approx((1 / 3, 2 / 3))
    # fine's 0.05, 0.0975, 0.1426 would share block 1; each takes the next block instead
    assert place("fine", 3, FRACTIONS, first_attach=1).blocks == (1, 2, 3)
    # a stem-less backbone may take block 0
    assert place("explicit", 0, FRACTIONS, [0.04]).blocks == (0,)


def test_achieved_cost_adds_the_exits_own_branch_but_the_check_reads_the_backbone():
    branch = {1: 0.01, 2: 0.02, 3: 0.04, 4: 0.08}.get
    p = place("linear", 1, FRACTIONS, branch_cost=branch, first_attach=1)  # target 0.5
    assert p.blocks == (3,) and p.fractions == pytest.approx((0.54,))
    # 0.48 + branch would pass 0.5, yet the backbone alone at block 2 (0.3) does not
    assert place("explicit", 0, FRACTIONS, [0.45], branch_cost=branch, first_attach=1).blocks == (3,)


def test_too_many_exits_say_how_many_fit():
    with pytest.raises(ConfigError, match="placement 'linear' fits only 3 of 4 exits"):
        place("linear", 4, FRACTIONS, first_attach=1)  # 0.8 is past block 4 (0.7)
    with pytest.raises(ConfigError, match="fits only 2 of 3 exits .* no attach point is left"):
        place("explicit", 0, FRACTIONS, [0.45, 0.6, 0.65], first_attach=1)


def test_explicit_positions():
    assert place("explicit", 0, FRACTIONS, [3, 1], first_attach=1).blocks == (1, 3)
    assert place("explicit", 0, FRACTIONS, parse_positions("0.31, 0.69"), first_attach=1).blocks \
        == (3, 4)
    assert parse_positions("1,3") == [1, 3] and parse_positions("0.5") == [0.5]


@pytest.mark.parametrize("args, message", [
    (("pareto", 5, FRACTIONS), "5 exits requested but the backbone has only 4 attach points"),
    (("explicit", 0, FRACTIONS), "needs positions"),
    (("explicit", 0, FRACTIONS, [5]), "block 5 is out of range: attach points are blocks 1..4"),
    (("explicit", 0, FRACTIONS, [0]), "block 0 is out of range"),
    (("explicit", 0, FRACTIONS, [2, 2]), "must be distinct"),
    (("explicit", 0, FRACTIONS, [1.5]), "must be in \\(0, 1\\)"),
    (("linear", 2, FRACTIONS, [0.2]), "only used with placement 'explicit'"),
])
def test_placement_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        place(*args, first_attach=1)


def test_unknown_rule_and_bad_positions():
    with pytest.raises(UnknownNameError, match="expected one of: pareto, fine, golden"):
        place("cubic", 2, FRACTIONS)
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_positions("0.2,x")
    assert set(PLACEMENTS.names()) == {"pareto", "fine", "golden", "linear", "quadratic",
                                       "squared", "explicit"}
