"""``dse latency``: predicted per-exit latency and energy of a configuration on a profile."""
from __future__ import annotations

import click

from dse.cli import options
from dse.cli.output import echo_json, table
from dse.cost.assemble import assemble, default_input_spec
from dse.cost.latency import energy_mj, predict
from dse.cost.op_trace import trace_multiexit
from dse.cost.profiles import load_profile
from dse.models.placement import parse_positions


@click.command("latency")
@options.profile
@options.runtime
@options.backbone
@options.checkpoint
@options.input_size
@click.option("--num-classes", type=click.IntRange(min=2), default=None,
              help="Classes of the head (default: 10, or 1000 for ImageNet-size backbones).")
@options.exits
@options.placement
@options.positions
@options.branch
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size (every input of the batch leaves at the same exit).")
@options.json_flag
def command(profile, runtime, backbone, checkpoint, input_size, num_classes, num_exits, placement,
            positions, branch, batch, as_json):
    """Model the latency of reaching and evaluating every exit of a configuration."""
    prof = load_profile(profile)
    rt = prof.runtime(runtime)  # unknown names fail before any model is built
    inputs = default_input_spec(backbone, input_size, num_classes)
    a = assemble(backbone, inputs, num_exits, placement, branch, parse_positions(positions),
                 checkpoint=checkpoint)
    model = a.model
    records = trace_multiexit(model.backbone, inputs.shape, model.exit_blocks, list(model.branches),
                              batch=batch)
    pred = predict(records, prof, rt)
    final_block = len(model.backbone.blocks) - 1
    blocks = [*model.exit_blocks, final_block]
    exits = [{"index": k, "block": b, "final": k == len(blocks) - 1,
              "latency_ms": round(ms, 6), "energy_mj": round(energy_mj(ms, rt), 6),
              "cum_macs": int(a.exit_macs[k]) * batch}
             for k, (b, ms) in enumerate(zip(blocks, pred.exit_ms))]
    result = {
        "profile": prof.name, "runtime": rt.name, "backbone": a.backbone.name,
        "input_size": inputs.input_size, "batch": batch, "total_ms": round(pred.backbone_ms, 6),
        "total_macs": int(a.macs.total_macs) * batch, "kernels": pred.kernels,
        "decision_ms": pred.decision_ms, "exits": exits,
    }
    if as_json:
        echo_json(result)
        return
    click.echo(f"{a.backbone.name} at {inputs.input_size}x{inputs.input_size}, batch {batch}, on "
               f"{prof.name} / {rt.name}: backbone alone {pred.backbone_ms:.3f} ms "
               f"({pred.kernels} kernels, {result['total_macs'] / 1e6:.1f} M MACs)")
    rows = [[("final" if e["final"] else e["index"] + 1), e["block"], f"{e['cum_macs'] / 1e6:.3f}",
             f"{e['latency_ms']:.3f}", f"{e['energy_mj']:.3f}"] for e in exits]
    click.echo(table(["exit", "block", "cum M MACs", "latency ms", "energy mJ"], rows))
