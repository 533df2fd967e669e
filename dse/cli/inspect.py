"""``dse inspect``: blocks, attach points, placement and MACs of a multi-exit configuration."""
from __future__ import annotations

import click

from dse.cli import options
from dse.cli.output import echo_json, table
from dse.cost.assemble import assemble, default_input_spec
from dse.cost.flops import param_count
from dse.errors import ConfigError
from dse.models.placement import parse_positions


def _branch_params(items: tuple[str, ...]) -> dict[str, int]:
    """``("width=128",)`` -> ``{"width": 128}`` (the branch type checks names and ranges)."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().lstrip("-").isdigit():
            raise ConfigError(f"--branch-param: expected NAME=INTEGER (e.g. width=128), "
                              f"got {item!r}")
        out[name.strip()] = int(value)
    return out


@click.command("inspect")
@options.backbone
@options.checkpoint
@options.input_size
@click.option("--num-classes", type=click.IntRange(min=2), default=None,
              help="Classes of the head (default: 10, or 1000 for ImageNet-size backbones).")
@options.exits
@options.placement
@options.positions
@options.branch
@click.option("--branch-param", "branch_param", multiple=True, metavar="NAME=INT",
              help="A parameter of the branch type (repeatable), e.g. width=128 for the msdnet "
                   "branch on msdnet-cifar.")
@options.json_flag
def command(backbone, checkpoint, input_size, num_classes, num_exits, placement, positions,
            branch, branch_param, as_json):
    """Show a backbone's blocks, where exits land, and what each exit costs in MACs."""
    inputs = default_input_spec(backbone, input_size, num_classes)
    a = assemble(backbone, inputs, num_exits, placement, branch, parse_positions(positions),
                 checkpoint=checkpoint, branch_params=_branch_params(branch_param))
    cum = a.macs.cum_macs
    blocks = [{"index": i, "name": n, "macs": m, "cum_macs": c}
              for i, (n, m, c) in enumerate(zip(a.backbone.block_names, a.macs.block_macs, cum))]
    exits = [{"index": k, "block": b, "target_fraction": round(t, 6), "fraction": round(f, 6),
              "branch_macs": bm, "cum_macs": cm, "params": p}
             for k, (b, t, f, bm, cm, p) in enumerate(zip(
                 a.placement.blocks, a.placement.target_fractions, a.placement.fractions,
                 a.branch_macs, a.exit_macs, a.branch_params))]
    result = {
        "backbone": a.backbone.name, "input_size": inputs.input_size,
        "in_channels": inputs.in_channels, "num_classes": inputs.num_classes,
        "total_macs": a.macs.total_macs, "head_macs": a.macs.head_macs,
        "params": param_count(a.backbone), "blocks": blocks, "exits": exits,
        "final_cum_macs": a.exit_macs[-1], "uncounted_ops": a.macs.unsupported,
    }
    if as_json:
        echo_json(result)
        return
    click.echo(f"{a.backbone.name}: {inputs.in_channels}x{inputs.input_size}x{inputs.input_size} "
               f"input, {inputs.num_classes} classes, {a.macs.total_macs / 1e6:.2f} M MACs, "
               f"{result['params'] / 1e6:.3f} M params")
    exit_at = {e["block"]: e["index"] for e in exits}
    rows = [[b["index"], b["name"], f"{b['macs'] / 1e6:.3f}", f"{b['cum_macs'] / 1e6:.3f}",
             f"{100 * b['cum_macs'] / a.macs.total_macs:.1f}",
             f"exit {exit_at[b['index']] + 1}" if b["index"] in exit_at else ""] for b in blocks]
    click.echo(table(["block", "name", "M MACs", "cum M MACs", "cum %", "early exit"], rows))
    if exits:
        click.echo(f"\n{len(exits)} {branch} exits placed by {placement} (placed % = backbone "
                   "up to the block plus the exit's own branch, over the backbone)")
        rows = [[e["index"] + 1, e["block"], f"{100 * e['target_fraction']:.1f}",
                 f"{100 * e['fraction']:.1f}", f"{e['branch_macs'] / 1e3:.1f}",
                 f"{e['cum_macs'] / 1e6:.3f}", e["params"]] for e in exits]
        click.echo(table(["exit", "block", "target %", "placed %", "branch k MACs",
                          "exit cum M MACs", "params"], rows))
    click.echo(f"final exit: {a.exit_macs[-1] / 1e6:.3f} M MACs with all branches evaluated")
    if a.macs.unsupported:
        ops = ", ".join(f"{k} x{v}" for k, v in a.macs.unsupported.items())
        click.echo(f"not counted by fvcore (no multiply-adds or unsupported): {ops}")
