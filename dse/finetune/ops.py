"""Training-operation accounting for entire vs selective fine-tuning (pure functions).

Convention (forward + backward + update, as Hirose et al., IEEE Access 2020, count training
computation), in MACs. Exit b's classifier (its branch; the backbone's head for the final
exit) costs F_b MACs per sample forward and has P_b parameters; the frozen backbone costs R_b
MACs per sample to reach exit b's input. One training step on a batch of size n that trains
the set T of exits costs

    ops(T) = n * ( [R_max(T)] + sum_{b in T} 3 F_b ) + sum_{b in T} P_b

- forward F_b, backward 2 F_b (gradient with respect to the layer inputs and to the weights,
  the usual 2x; an upper bound for the first layer, whose input gradient is not needed);
- update: one multiply-add per parameter (plain SGD; Adam's few extra element-wise operations
  per parameter are not counted);
- [R_max(T)] = max_{b in T} R_b, the frozen backbone's forward pass to the deepest trained exit,
  counted only with ``backbone_forward=True`` (no feature cache: the paper's setting). dse
  caches the frozen backbone's features once, which costs the same for both procedures, so the
  default leaves it out and counts the classifiers alone.

Entire fine-tuning trains every exit for S steps: S * ops(all).
Selective fine-tuning probes every exit for s steps, then continues the chosen subset T from
the probe to the end of the same schedule: s * ops(all) + (S - s) * ops(T).
(``continue_from_probe=False`` restarts T for the full S steps: s * ops(all) + S * ops(T).)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

BACKWARD_FACTOR = 2  #: backward MACs per forward MAC of a trained layer


@dataclass(frozen=True)
class ExitTrainCost:
    """Per-sample cost of training one exit's classifier."""

    forward_macs: int  #: F_b: the classifier's forward MACs per sample
    params: int        #: P_b: trainable parameters of the classifier
    reach_macs: int    #: R_b: frozen backbone MACs per sample up to the classifier's input


def step_ops(costs: Sequence[ExitTrainCost], trained: Sequence[bool], batch_size: int, *,
             backbone_forward: bool = False) -> int:
    """MACs of one step training exits where ``trained`` is true (formula in the module doc)."""
    if len(costs) != len(trained):
        raise ValueError(f"{len(costs)} exit costs but {len(trained)} trained flags")
    chosen = [c for c, t in zip(costs, trained) if t]
    if not chosen:
        return 0
    per_sample = sum((1 + BACKWARD_FACTOR) * c.forward_macs for c in chosen)
    if backbone_forward:
        per_sample += max(c.reach_macs for c in chosen)
    return batch_size * per_sample + sum(c.params for c in chosen)


def entire_ops(costs: Sequence[ExitTrainCost], steps: int, batch_size: int, *,
               backbone_forward: bool = False) -> int:
    """S * ops(all): every exit fine-tuned for the whole schedule."""
    return steps * step_ops(costs, [True] * len(costs), batch_size,
                            backbone_forward=backbone_forward)


def selective_ops(costs: Sequence[ExitTrainCost], subset: Sequence[bool], probe_steps: int,
                  steps: int, batch_size: int, *, backbone_forward: bool = False,
                  continue_from_probe: bool = True) -> int:
    """s * ops(all) + (S - s) * ops(T) (or S * ops(T) without ``continue_from_probe``)."""
    if probe_steps > steps and continue_from_probe:
        raise ValueError(f"probe steps ({probe_steps}) exceed the schedule ({steps})")
    probe = probe_steps * step_ops(costs, [True] * len(costs), batch_size,
                                   backbone_forward=backbone_forward)
    rest = (steps - probe_steps) if continue_from_probe else steps
    return probe + rest * step_ops(costs, subset, batch_size, backbone_forward=backbone_forward)


def ops_ratio(costs: Sequence[ExitTrainCost], subset: Sequence[bool], probe_steps: int,
              steps: int, batch_size: int, *, backbone_forward: bool = False,
              continue_from_probe: bool = True) -> float:
    """Selective / entire training operations."""
    entire = entire_ops(costs, steps, batch_size, backbone_forward=backbone_forward)
    selective = selective_ops(costs, subset, probe_steps, steps, batch_size,
                              backbone_forward=backbone_forward,
                              continue_from_probe=continue_from_probe)
    return selective / entire if entire else float("nan")
