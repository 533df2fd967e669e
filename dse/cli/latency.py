"""``dse latency``: predicted per-exit latency and energy of a configuration on a profile."""
from __future__ import annotations

import click

from dse.api import latency
from dse.cli import options
from dse.cli.output import echo_json, table


@click.command("latency")
@options.profile
@options.runtime
@options.power_mode
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
def command(profile, runtime, power_mode, backbone, checkpoint, input_size, num_classes, num_exits, placement,
            positions, branch, batch, as_json):
    """Model the latency of reaching and evaluating every exit of a configuration."""
    runtime = options.with_power_mode(runtime, power_mode)
    result = latency(profile=profile, runtime=runtime, backbone=backbone, checkpoint=checkpoint,
                     input_size=input_size, num_classes=num_classes, exits=num_exits,
                     placement=placement, positions=positions, branch=branch, batch=batch)
    if as_json:
        echo_json(result)
        return
    click.echo(f"{result['backbone']} at {result['input_size']}x{result['input_size']}, batch "
               f"{batch}, on {result['profile']} / {result['runtime']}: backbone alone "
               f"{result['total_ms']:.3f} ms ({result['kernels']} kernels, "
               f"{result['total_macs'] / 1e6:.1f} M MACs)")
    rows = [[("final" if e["final"] else e["index"] + 1), e["block"], f"{e['cum_macs'] / 1e6:.3f}",
             f"{e['latency_ms']:.3f}", f"{e['energy_mj']:.3f}"] for e in result["exits"]]
    click.echo(table(["exit", "block", "cum M MACs", "latency ms", "energy mJ"], rows))
