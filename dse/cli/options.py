"""CLI options shared by several commands, each defined once.

Usage::

    @click.command()
    @options.backbone
    @options.json_flag
    def inspect(backbone, as_json): ...
"""
from __future__ import annotations

import math

import click

from dse.device import DEVICE_CHOICES, available_cpus


class FloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinities: NaN passes every ``<``/``>``
    bound check, so ``--budget-ms nan`` would otherwise reach the search."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class ChoiceOrCode(click.Choice):
    """A registered name, or ``module:fn`` naming user code (imported from the current folder
    or the Python path when it is used, :mod:`dse.plugins`)."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, str) and ":" in value:
            return value
        return super().convert(value, param, ctx)


backbone = click.option(
    "--backbone", default="digits-resnet", show_default=True,
    help="Built-in backbone name or 'package.module:factory' for your own.",
)
checkpoint = click.option(
    "--checkpoint", type=click.Path(dir_okay=False), default=None,
    help="Backbone weights (a state_dict or a checkpoint holding one).",
)
dataset = click.option(
    "--dataset", default="digits", show_default=True,
    help="NAME or NAME:PATH (digits, digits-hard, cifar10, cifar100, mnist, fashion-mnist, svhn, "
         "imagefolder).",
)
input_size = click.option(
    "--input-size", type=click.IntRange(min=1), default=None,
    help="Input height/width in pixels (default: the dataset's, or the backbone's usual).",
)
exits = click.option(
    "--exits", "num_exits", type=click.IntRange(min=0), default=0, show_default=True,
    help="Number of early exits to place (the final exit is always present).",
)
placement = click.option(
    "--placement", default="pareto", show_default=True,
    help="Placement rule: pareto, fine, golden, linear, quadratic, explicit.",
)
positions = click.option(
    "--positions", default=None,
    help="For --placement explicit: comma-separated MAC fractions (0-1) or block indices.",
)
branch = click.option(
    "--branch", default="pool", show_default=True,
    help="Exit branch type: plain, pool, bnpool, convx, msdnet.",
)
profile = click.option(
    "--profile", default="jetson", show_default=True,
    help="Hardware profile name, alias, or path to a profile YAML.",
)
runtime = click.option(
    "--runtime", default=None, help="Runtime within the profile (default: the profile's own).",
)
power_mode = click.option(
    "--power-mode", default=None,
    help="Power mode of the device (nvpmodel name on Jetsons, e.g. MAXN, 15W; default: the "
         "profile's default, MAXN on Jetsons); 'dse profile show NAME' lists them.",
)


def with_power_mode(runtime: str | None, power_mode: str | None) -> str | None:
    """The runtime spec ``RUNTIME@MODE`` the profile resolves (dse.cost.profiles.Profile.runtime)."""
    if not power_mode:
        return runtime
    if "@" in power_mode or not power_mode.strip():
        raise click.BadParameter(f"a power mode name, got {power_mode!r}", param_hint="--power-mode")
    return f"{runtime or ''}@{power_mode}"


seed = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers, e.g. 0.5,0.5,0.5; got {value!r}")


def normalize(f):
    """``--normalize``, ``--mean``, ``--std``: the input normalisation (dse.data.normalization)."""
    f = click.option("--std", callback=_floats, default=None,
                     help="Per-channel std on the [0, 1] scale, comma-separated (with --mean).")(f)
    f = click.option("--mean", callback=_floats, default=None,
                     help="Per-channel mean on the [0, 1] scale, comma-separated (with --std).")(f)
    return click.option("--normalize", type=click.Choice(["dataset", "imagenet", "none"]),
                        default=None, help="Input normalisation: the train split's statistics "
                        "(default), ImageNet's, or none (pixels on [0, 1]).")(f)


json_flag = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.",
)
device = click.option(
    "--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True,
    help="Where torch runs: auto picks CUDA when present.",
)
threads = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help=f"CPU threads for torch (default: the CPUs this process may use, {available_cpus()} "
         "here).",
)
allow_code = click.option(
    "--allow-code", is_flag=True,
    help="Let the file's backbone name Python code ('package.module:factory'), which dse then "
         "imports and calls. Off: only --backbone on the command line can name code.",
)
