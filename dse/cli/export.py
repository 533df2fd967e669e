"""``dse export``: a model trained by ``dse train`` -> an ONNX early-exit bundle folder."""
from __future__ import annotations

from pathlib import Path

import click

from dse.cli import options
from dse.cli.output import echo_json, table
from dse.api import export


@click.command("export")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="A model.pt written by dse train.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Bundle folder (default: bundle/ next to the checkpoint).")
@click.option("--profile", default=None,
              help="Profile of the predicted per-exit latency in the manifest "
                   "(default: the one the search used).")
@options.runtime
@click.option("--all-exits", is_flag=True,
              help="Also write all_exits.onnx: input -> every exit's logits, one graph.")
@options.json_flag
def command(checkpoint, out_dir, profile, runtime, all_exits, as_json):
    """Write one ONNX graph per backbone segment and per exit head, manifest.json and the
    onnxruntime-only runner run_bundle.py."""
    result = export(checkpoint, out_dir, profile=profile, runtime=runtime, all_exits=all_exits)
    out, manifest = Path(result["bundle"]), result["manifest"]
    if as_json:
        echo_json(result)
        return
    pred = manifest["predicted"]
    rows = [[e["index"] + 1, "final" if e["final"] else e["block"], e["segment"], e["head"],
             f"{e['cumulative_macs'] / 1e6:.3f}",
             "-" if e["predicted_latency_ms"] is None else f"{e['predicted_latency_ms']:.3f}"]
            for e in manifest["exits"]]
    click.echo(f"bundle {out}: {len(manifest['graphs'])} ONNX graphs (opset {manifest['opset']}), "
               f"criterion {manifest['criterion']['name']}")
    click.echo(table(["exit", "block", "segment", "head", "M MACs", "predicted ms"], rows))
    if pred["profile"]:
        click.echo(f"predicted ms: on profile {pred['profile']} ({pred['runtime']}), not measured")
    else:
        click.echo(f"predicted latency: not computed ({pred['note']})")
    click.echo(f"run it: dse run --bundle {out}   or on a board: python {out}/run_bundle.py -h")
