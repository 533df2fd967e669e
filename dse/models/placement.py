"""Placement rules: where N early exits go, as target fractions of total backbone MACs.

From the EENets work (Demir 2019, section 3.3), with i = 1..N:

- pareto:    c_i = 1 - 0.8^i            (each exit spends 20% of what is left)
- fine:      c_i = 1 - 0.95^i
- golden:    c_i = 0.618^(N + 1 - i)
- linear:    c_i = i / (N + 1)
- quadratic: c_i = (i / (N + 1))^2
- explicit:  fractions in (0, 1) or block indices given by the user

Each target snaps to the attach point (block boundary) whose cumulative backbone MACs fraction is
nearest; duplicates and the final block (whose output feeds the head) are dropped, and the
fractions actually achieved are kept. Pure python: numbers in, numbers out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from dse.errors import ConfigError
from dse.registry import Registry

PLACEMENTS: Registry[Callable[[int], list[float]]] = Registry("placement")

PLACEMENTS.add("pareto", lambda n: [1 - 0.8 ** i for i in range(1, n + 1)])
PLACEMENTS.add("fine", lambda n: [1 - 0.95 ** i for i in range(1, n + 1)])
PLACEMENTS.add("golden", lambda n: [0.618 ** (n + 1 - i) for i in range(1, n + 1)])
PLACEMENTS.add("linear", lambda n: [i / (n + 1) for i in range(1, n + 1)])
PLACEMENTS.add("quadratic", lambda n: [(i / (n + 1)) ** 2 for i in range(1, n + 1)])
PLACEMENTS.add("explicit", lambda n: [])  # positions come from the user


@dataclass(frozen=True)
class Placement:
    """Where the exits landed: block indices, the rule's targets and the fractions achieved."""

    blocks: tuple[int, ...]
    target_fractions: tuple[float, ...]
    fractions: tuple[float, ...]
    dropped: int = 0  # targets lost to duplicates or the final block


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
          positions: Sequence[float | int] | None = None) -> Placement:
    """Place ``num_exits`` exits by ``rule`` on attach points with cumulative MAC fractions.

    ``cum_fractions[b]`` is the fraction of total backbone MACs spent at the end of block ``b``;
    the last block is not an attach point (its output feeds the head).
    """
    rule = PLACEMENTS.resolve(rule)
    attach = list(cum_fractions[:-1])
    if num_exits < 0:
        raise ConfigError(f"number of exits must be >= 0, got {num_exits}")
    if rule == "explicit":
        return _place_explicit(positions or [], attach)
    if positions:
        raise ConfigError(f"positions are only used with placement 'explicit', not {rule!r}")
    if num_exits > len(attach):
        raise ConfigError(
            f"{num_exits} exits requested but the backbone has only {len(attach)} attach points"
        )
    targets = target_fractions(rule, num_exits)
    return _snap(targets, attach)


def _snap(targets: Sequence[float], attach: Sequence[float]) -> Placement:
    blocks: list[int] = []
    kept_targets: list[float] = []
    for t in targets:
        b = min(range(len(attach)), key=lambda i: (abs(attach[i] - t), i))
        if b not in blocks:
            blocks.append(b)
            kept_targets.append(t)
    order = sorted(range(len(blocks)), key=lambda k: blocks[k])
    blocks = [blocks[k] for k in order]
    kept_targets = [kept_targets[k] for k in order]
    return Placement(tuple(blocks), tuple(kept_targets), tuple(attach[b] for b in blocks),
                     dropped=len(targets) - len(blocks))


def _place_explicit(positions: Sequence[float | int], attach: Sequence[float]) -> Placement:
    if not positions:
        raise ConfigError("placement 'explicit' needs positions (MAC fractions or block indices)")
    if all(isinstance(p, int) and not isinstance(p, bool) for p in positions):
        for p in positions:
            if not 0 <= p < len(attach):
                raise ConfigError(
                    f"explicit exit block {p} is out of range: attach points are blocks "
                    f"0..{len(attach) - 1}"
                )
        blocks = sorted(set(positions))
        fracs = tuple(attach[b] for b in blocks)
        return Placement(tuple(blocks), fracs, fracs, dropped=len(positions) - len(blocks))
    for p in positions:
        if not 0 < float(p) < 1:
            raise ConfigError(f"explicit exit fraction must be in (0, 1), got {p}")
    return _snap([float(p) for p in positions], attach)
