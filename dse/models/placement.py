"""Placement rules: where N early exits go, as target fractions of total backbone MACs.

From the EENets work (Demir 2019, section 3.3), with i = 1..N:

- pareto:    c_i = 1 - 0.8^i            (each exit spends 20% of what is left)
- fine:      c_i = 1 - 0.95^i
- golden:    c_i = 0.618^(N + 1 - i)
- linear:    c_i = i / (N + 1)
- quadratic: our reading of the thesis (below)
- squared:   c_i = (i / (N + 1))^2      (dse's former ``quadratic``, kept under this name)
- explicit:  fractions in (0, 1) or block indices given by the user

``quadratic``: the thesis gives no formula, only that the cost between consecutive exits grows
quadratically, and a table (ResNet-110, 6 exits: 2/4/11/20/40/74 %). Our reading: the first and
last exits sit where ``squared`` puts them, c_1 = (1/(N+1))^2 and c_N = (N/(N+1))^2 (2.0 % and
73.5 % for N = 6, the table's ends), and each exit in between costs a constant factor more than
the one before, c_i = c_1 * N^(2(i-1)/(N-1)), so the gap to the next exit grows by that factor
N^(2/(N-1)) too (2.05 for N = 6; the table's gaps are 2, 2, 7, 9, 20, 34). On ResNet-110 it lands
at 4/6/9/19/37/74 %, within 3 points of the table; (i/(N+1))^2 gives 2/8/19/32/52/74 %.

Landing, as the EENets reference code (``eenet.py``: ``is_suitable_for_exit``, ``add_exit_block``)
does it: walk the attach points in order; exit k goes after the first block past exit k-1's
block where the backbone's cumulative MACs reach c_k of its total. The cost recorded for the exit
(``Placement.fractions``, what the thesis tables report) is the backbone up to that block plus
the exit's own branch, over the backbone. The check reads the backbone alone, as the reference
does, not backbone plus branch: on ResNet-20, pareto's second target (36 %) meets block 3 at
35.996 % of the backbone and 36.04 % with a pool branch; the thesis reports 45 %, i.e. the next
block, which only the backbone-alone check reproduces. One exit per block. Stems are not attach
points (the reference starts its walk after the first residual block), nor is the final block
(its output feeds the head). When the walk
runs out of blocks the placement fails with a :class:`~dse.errors.ConfigError` that says how
many exits fit; the requested count is never met silently with fewer.

Pure python: numbers in, numbers out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from dse.errors import ConfigError
from dse.registry import Registry

PLACEMENTS: Registry[Callable[[int], list[float]]] = Registry("placement")


def _quadratic(n: int) -> list[float]:
    """Our reading of the thesis' quadratic rule (module docstring)."""
    first, last = (1 / (n + 1)) ** 2, (n / (n + 1)) ** 2
    if n == 1:
        return [first]
    return [first * (last / first) ** ((i - 1) / (n - 1)) for i in range(1, n + 1)]


PLACEMENTS.add("pareto", lambda n: [1 - 0.8 ** i for i in range(1, n + 1)])
PLACEMENTS.add("fine", lambda n: [1 - 0.95 ** i for i in range(1, n + 1)])
PLACEMENTS.add("golden", lambda n: [0.618 ** (n + 1 - i) for i in range(1, n + 1)])
PLACEMENTS.add("linear", lambda n: [i / (n + 1) for i in range(1, n + 1)])
PLACEMENTS.add("quadratic", _quadratic)
PLACEMENTS.add("squared", lambda n: [(i / (n + 1)) ** 2 for i in range(1, n + 1)])
PLACEMENTS.add("explicit", lambda n: [])  # positions come from the user

#: the cost fraction of an exit's own branch after a block (a block index -> fraction)
BranchCost = Callable[[int], float]


@dataclass(frozen=True)
class Placement:
    """Where the exits landed: block indices, the rule's targets and the costs achieved
    (backbone up to the block plus the exit's own branch, over the backbone)."""

    blocks: tuple[int, ...]
    target_fractions: tuple[float, ...]
    fractions: tuple[float, ...]


def target_fractions(rule: str, num_exits: int) -> list[float]:
    """The rule's target MAC fractions for ``num_exits`` exits."""
    return list(PLACEMENTS.get(rule)(num_exits))


def parse_positions(text: str | Sequence[float | int] | None) -> list[float | int]:
    """'0.2,0.5' -> fractions; '3,7' -> block indices; lists pass through (ints = indices)."""
    if text is None:
        return []
    if isinstance(text, str):
        values: list[float | int] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                values.append(float(part) if any(c in part for c in ".eE") else int(part))
            except ValueError:
                raise ConfigError(f"--positions: {part!r} is not a number") from None
        return values
    return list(text)


def place(rule: str, num_exits: int, cum_fractions: Sequence[float],
          positions: Sequence[float | int] | None = None, *,
          branch_cost: BranchCost | None = None, first_attach: int = 0) -> Placement:
    """Place ``num_exits`` exits by ``rule`` on a backbone's attach points.

    ``cum_fractions[b]``: the fraction of total backbone MACs spent at the end of block ``b``.
    Attach points are blocks ``first_attach .. len(cum_fractions) - 2`` (1 skips a stem; the
    last block feeds the head). ``branch_cost(b)``: the exit branch's MACs after block ``b`` over
    the backbone's (default: free); it enters the achieved cost, not the landing check.
    """
    rule = PLACEMENTS.resolve(rule)
    attach = range(first_attach, len(cum_fractions) - 1)
    cost = branch_cost or (lambda b: 0.0)
    if num_exits < 0:
        raise ConfigError(f"number of exits must be >= 0, got {num_exits}")
    if rule == "explicit":
        return _place_explicit(positions or [], cum_fractions, attach, cost)
    if positions:
        raise ConfigError(f"positions are only used with placement 'explicit', not {rule!r}")
    if num_exits > len(attach):
        raise ConfigError(f"{num_exits} exits requested but the backbone has only "
                          f"{len(attach)} attach points")
    return _walk(target_fractions(rule, num_exits), cum_fractions, attach, cost, rule)


def _walk(targets: Sequence[float], cum: Sequence[float], attach: range, cost: BranchCost,
          rule: str) -> Placement:
    """Exit k after the first attach point past exit k-1's whose backbone cost reaches
    targets[k]."""
    blocks: list[int] = []
    achieved: list[float] = []
    b = attach.start
    for k, t in enumerate(targets):
        while b < attach.stop and cum[b] < t:
            b += 1
        if b >= attach.stop:
            last = attach.stop - 1
            where = (f"no attach point is left after block {blocks[-1]}" if blocks and
                     blocks[-1] == last else
                     f"its target {100 * t:.1f}% is past the last attach point (block {last}, "
                     f"{100 * cum[last]:.1f}%)")
            raise ConfigError(f"placement {rule!r} fits only {k} of {len(targets)} exits on this "
                              f"backbone: exit {k + 1}: {where}")
        blocks.append(b)
        achieved.append(cum[b] + cost(b))
        b += 1
    return Placement(tuple(blocks), tuple(float(t) for t in targets), tuple(achieved))


def _place_explicit(positions: Sequence[float | int], cum: Sequence[float], attach: range,
                    cost: BranchCost) -> Placement:
    if not positions:
        raise ConfigError("placement 'explicit' needs positions (MAC fractions or block indices)")
    if all(isinstance(p, int) and not isinstance(p, bool) for p in positions):
        for p in positions:
            if p not in attach:
                raise ConfigError(f"explicit exit block {p} is out of range: attach points are "
                                  f"blocks {attach.start}..{attach.stop - 1}")
        if len(set(positions)) != len(positions):
            raise ConfigError(f"explicit exit blocks must be distinct (one exit per block), "
                              f"got {list(positions)}")
        blocks = tuple(sorted(positions))
        fracs = tuple(cum[b] + cost(b) for b in blocks)
        return Placement(blocks, fracs, fracs)
    for p in positions:
        if not 0 < float(p) < 1:
            raise ConfigError(f"explicit exit fraction must be in (0, 1), got {p}")
    return _walk(sorted(float(p) for p in positions), cum, attach, cost, "explicit")
