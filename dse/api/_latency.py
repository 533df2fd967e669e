"""``dse.api.latency``: predicted per-exit latency and energy of a configuration on a profile."""
from __future__ import annotations

from typing import Any

from dse.api._checks import at_least
from dse.cost.assemble import assemble, default_input_spec
from dse.cost.latency import energy_mj, predict
from dse.cost.op_trace import trace_multiexit
from dse.cost.profiles import load_profile
from dse.models.placement import parse_positions


def latency(*, profile: str = "jetson", runtime: str | None = None,
            backbone: str = "digits-resnet", checkpoint: str | None = None,
            input_size: int | None = None, num_classes: int | None = None, exits: int = 0,
            placement: str = "pareto", positions: str | None = None, branch: str = "pool",
            batch: int = 1) -> dict[str, Any]:
    """Model the latency of reaching and evaluating every exit of a configuration
    (``dse latency``); nothing is trained or timed.

    Args:
        profile: hardware profile name, alias, or path to a profile YAML.
        runtime: runtime within the profile (None: the profile's own).
        backbone: built-in backbone name or ``module:factory`` for your own.
        checkpoint: backbone weights (a state_dict or a checkpoint holding one), or None.
        input_size: input height/width in pixels (None: the backbone's usual).
        num_classes: classes of the head (None: 10, or 1000 for ImageNet-size backbones).
        exits: number of early exits to place (the final exit is always present).
        placement: placement rule: pareto, fine, golden, linear, quadratic, explicit.
        positions: for ``placement="explicit"``: comma-separated MAC fractions (0-1) or block
            indices.
        branch: exit branch type: plain, pool, bnpool, convx.
        batch: batch size (every input of the batch leaves at the same exit).

    Returns:
        The ``dse latency --json`` dict: ``profile``, ``runtime``, ``backbone``, ``input_size``,
        ``batch``, ``total_ms`` (backbone alone), ``total_macs``, ``kernels``, ``decision_ms``
        and ``exits`` (one dict per exit: ``index``, ``block``, ``final``, ``latency_ms``,
        ``energy_mj``, ``cum_macs``).

    Raises:
        dse.errors.DseError: a bad name, value or file (never SystemExit).
    """
    at_least("exits", exits, 0)
    at_least("batch", batch, 1)
    at_least("input_size", input_size, 1)
    at_least("num_classes", num_classes, 2)
    prof = load_profile(profile)
    rt = prof.runtime(runtime)  # unknown names fail before any model is built
    inputs = default_input_spec(backbone, input_size, num_classes)
    a = assemble(backbone, inputs, exits, placement, branch, parse_positions(positions),
                 checkpoint=checkpoint)
    model = a.model
    records = trace_multiexit(model.backbone, inputs.shape, model.exit_blocks, list(model.branches),
                              batch=batch, threads=rt.threads)
    pred = predict(records, prof, rt)
    final_block = len(model.backbone.blocks) - 1
    blocks = [*model.exit_blocks, final_block]
    per_exit = [{"index": k, "block": b, "final": k == len(blocks) - 1,
                 "latency_ms": round(ms, 6), "energy_mj": round(energy_mj(ms, rt), 6),
                 "cum_macs": int(a.exit_macs[k]) * batch}
                for k, (b, ms) in enumerate(zip(blocks, pred.exit_ms))]
    return {
        "profile": prof.name, "runtime": rt.name, "backbone": a.backbone.name,
        "input_size": inputs.input_size, "batch": batch, "total_ms": round(pred.backbone_ms, 6),
        "total_macs": int(a.macs.total_macs) * batch, "kernels": pred.kernels,
        "decision_ms": pred.decision_ms, "exits": per_exit,
    }
