"""``dse profile``: list, show, calibrate and validate hardware profiles.

``--profile`` takes a shipped profile's name, an alias (``jetson`` is ``jetson-nano``), or the
path of a profile YAML, everywhere.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from dse.cli import options
from dse.cli.output import echo_json, table
from dse.cost.calibrate import calibrate as calibrate_here
from dse.cost.calibrate import write_profile
from dse.cost.calibrate_measure import CalibrationSettings
from dse.cost.harness import DEFAULT_REFERENCE, REFERENCES
from dse.cost.profiles import (error_line, list_profiles, load_profile, profile_dirs,
                               profile_to_dict)
from dse.cost.validate import ValidationSettings
from dse.cost.validate import validate as validate_here
from dse.errors import ConfigError
from dse.export.ort_bench import DEFAULT_PROVIDER, ENGINES, check_engine, check_provider
from dse.export.ort_calibrate import calibrate_ort
from dse.export.ort_validate import is_ort_runtime, resolve_runtime, validate_ort
from dse.paths import check_writable_file

#: text tables fit this many columns
WIDTH = 100


@click.group("profile")
def command() -> None:
    """Hardware profiles: list, show, calibrate on this machine, validate the latency model."""


@command.command("list")
@options.json_flag
def list_(as_json: bool) -> None:
    """List the shipped profiles, their aliases and runtimes."""
    skipped: list[str] = []
    rows = list_profiles(skipped)
    for message in skipped:
        click.echo(f"warning: skipped {message}", err=True)
    if as_json:
        echo_json(rows)
        return
    rows = [[r["name"], ", ".join(r["aliases"]) or "-",
             r["default_runtime"] + (f" (+{len(r['runtimes']) - 1})" if len(r["runtimes"]) > 1
                                     else ""), r["description"]] for r in rows]
    used = sum(max(len(r[i]) for r in rows + [["profile", "aliases", "runtime", ""]]) + 2
               for i in range(3))
    room = max(WIDTH - used, 20)
    rows = [r[:3] + [r[3] if len(r[3]) <= room else r[3][:room - 3].rstrip() + "..."]
            for r in rows]
    click.echo(table(["profile", "aliases", "runtime", "description"], rows))
    click.echo("(+N: more runtimes; 'dse profile show NAME' lists them, --json prints everything)")


@command.command("show")
@click.argument("name")
@options.runtime
@options.power_mode
@options.json_flag
def show(name: str, runtime: str | None, power_mode: str | None, as_json: bool) -> None:
    """Show profile NAME (a name, an alias or a YAML path) with every value and source, and the
    latency model's error on the published measurements it is fitted to."""
    import yaml

    profile = load_profile(name)
    rt = profile.runtime(options.with_power_mode(runtime, power_mode))  # unknown names: exit 2
    mode = profile.power_mode(rt).name
    data = profile_to_dict(profile)
    errors = {n: (dict(r.fit_error) or None) for n, r in profile.runtimes.items()}
    if as_json:
        echo_json({**data, "path": profile.path, "selected": {"runtime": rt.name.partition("@")[0],
                   "power_mode": mode, "clock_scale": profile.clock_scale(rt),
                   "sm_scale": profile.sm_scale(rt),
                   "bandwidth_scale": profile.bandwidth_scale(rt)},
                   "published_error": errors})
        return
    click.echo(f"# {profile.path}")
    click.echo(yaml.safe_dump(data, sort_keys=False, width=100).rstrip())
    click.echo(f"\n# power mode {mode}: compute at {profile.clock_scale(rt):.2f}x the peak's clock "
               f"x {profile.sm_scale(rt):.2f} of the SMs, memory bandwidth at "
               f"{profile.bandwidth_scale(rt):.2f}x")
    for r in profile.runtimes.values():
        click.echo(f"# {error_line(profile, r)}")


provider_option = click.option(
    "--provider", default=None,
    help=f"ONNX Runtime execution provider, with an ONNX Runtime runtime (default "
         f"{DEFAULT_PROVIDER}; CUDAExecutionProvider, TensorrtExecutionProvider where installed).")
statistic_option = click.option(
    "--statistic", type=click.Choice(["median", "trimmed", "q25", "min"]), default="median",
    show_default=True, help="Statistic of the timed samples: median, 20%-trimmed mean, lower "
                            "quartile, or min (the least disturbed sample, on a loaded machine).")


def _provider(provider: str | None, onnxruntime: bool) -> str:
    """The execution provider to use, checked before minutes of measuring."""
    if provider is not None and not onnxruntime:
        raise ConfigError(f"--provider {provider} applies to ONNX Runtime only (--runtime "
                          "onnxruntime)")
    return check_provider(provider or DEFAULT_PROVIDER) if onnxruntime else DEFAULT_PROVIDER


@command.command("calibrate")
@click.option("--name", required=True, help="Name of the new profile (also its file name).")
@click.option("--runtime", "engine", default="pytorch", show_default=True,
              help=f"What to time: {' or '.join(ENGINES)} (the fitted runtime is 'host', or "
                   "'onnxruntime-<provider>-fp32' with fusion on).")
@provider_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the YAML (default: hardware_profiles/NAME.yaml, or the first "
                   "DSE_PROFILES_DIR folder).")
@options.threads
@click.option("--power-w", type=options.FloatRange(min=0), default=15.0, show_default=True,
              help="Average power while running, for energy estimates (not measurable here).")
@click.option("--quick", is_flag=True, help="A small benchmark grid (seconds; for smoke tests).")
@statistic_option
@click.option("--reference-kernel", type=click.Choice(sorted(REFERENCES)),
              default=DEFAULT_REFERENCE, show_default=True,
              help="The timing reference every sample is counted against (dse/cost/harness.py; "
                   "the profile records it and validation uses the same).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@options.json_flag
def calibrate(name, engine, provider, out, threads, power_w, quick, statistic, reference_kernel,
              force, as_json):
    """Fit a profile runtime to this machine by micro-benchmarks (PyTorch eager or ONNX Runtime).

    --threads pins torch's threads, or ONNX Runtime's intra-op threads (inter-op: 1).
    """
    onnxruntime = check_engine(engine) == "onnxruntime"
    provider = _provider(provider, onnxruntime)
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ConfigError(f"--name must be a plain profile name (no spaces or slashes), got {name!r}")
    path = Path(out) if out else profile_dirs()[0] / f"{name}.yaml"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it or --out elsewhere")
    check_writable_file(path, "--out")  # before minutes of measuring, not after
    log = (lambda m: click.echo(m, err=True)) if not as_json else (lambda m: None)
    settings = CalibrationSettings(threads=threads, power_w=power_w, quick=quick, statistic=statistic,
                                   reference_kernel=reference_kernel)
    if onnxruntime:
        profile = calibrate_ort(name, settings, provider, log=log)
        how = f"--runtime onnxruntime --provider {provider}"
    else:
        profile = calibrate_here(name, settings, log=log)
        how = "--runtime pytorch"
    written = write_profile(profile, path, header=f"Fitted by `dse profile calibrate --name {name} "
                            f"{how}`; see dse/cost/calibrate.py for what each value measures.")
    rt = profile.runtime()
    summary = {"profile": name, "path": str(written), "runtime": rt.name, "engine": engine,
               "provider": provider if onnxruntime else None, "threads": rt.threads,
               "fusion": rt.fusion, "graph_run_overhead_us": round(rt.graph_run_overhead_us, 3),
               "peak_gflops": profile.device.peak_gflops["fp32"],
               "memory_bandwidth_gbs": profile.device.memory_bandwidth_gbs,
               "decision_overhead_us": rt.decision_overhead_us,
               "overhead_us": {k: round(p.overhead_us, 3) for k, p in rt.ops.items()}}
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"wrote {written} (runtime '{rt.name}', {rt.threads} thread(s), "
                   f"peak {summary['peak_gflops']:.1f} GFLOPS, "
                   f"{summary['memory_bandwidth_gbs']:.1f} GB/s)")


@command.command("validate")
@options.profile
@click.option("--runtime", default=None,
              help="Runtime within the profile (default: the profile's own). A runtime named "
                   "onnxruntime-* is measured through exported bundles on ONNX Runtime; "
                   "'onnxruntime' picks the profile's one. Others: PyTorch eager.")
@provider_option
@options.threads
@click.option("--quick", is_flag=True, help="Two tiny cases instead of 7 backbones x 3 exit configurations.")
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Timed samples per exit (default 12, over 4 passes).")
@statistic_option
@options.json_flag
def validate(profile, runtime, provider, threads, quick, rounds, statistic, as_json):
    """Measure per-exit latency here and compare it with the profile's model."""
    prof = load_profile(profile)
    rt = resolve_runtime(prof, runtime, provider)  # unknown runtime: fail before measuring
    onnxruntime = is_ort_runtime(rt.name)
    provider = _provider(provider, onnxruntime)
    settings = ValidationSettings(threads=threads, quick=quick, statistic=statistic,
                                  **({"rounds": rounds} if rounds else {}))
    log = (lambda m: click.echo(m, err=True)) if not as_json else (lambda m: None)
    if onnxruntime:
        result = validate_ort(prof, rt.name, settings, provider, log=log)
    else:
        result = validate_here(prof, rt.name, settings, log=log)
    if as_json:
        echo_json(result)
        return
    rows = [[r["backbone"], r["exits"], r["branch"], r["exit"], r["block"],
             f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}", f"{100 * r['error']:+.1f}"]
            for r in result["rows"]]
    click.echo(table(["backbone", "exits", "branch", "exit", "block", "model ms", "measured ms",
                      "error %"], rows))
    b = result["baseline"]
    engine = result.get("provider") or "PyTorch eager"
    click.echo(f"\n{result['profile']}/{result['runtime']} on this machine ({engine}, "
               f"{result['threads']} thread(s)): n={result['n']}, MAPE {result['mape']:.1f}%, "
               f"{100 * result['within_10pct']:.0f}% within +-10%, Spearman {result['spearman']:.3f}")
    click.echo(f"repeatability: {100 * result['repeatability']:.0f}% of exits measured twice "
               f"(two halves of the samples) agree within +-10%; load average "
               f"{result['load_avg']['before']} -> {result['load_avg']['after']}")
    click.echo("median error by backbone: " + ", ".join(
        f"{name} {100 * v['median_error']:+.1f}% ({v['within']}/{v['n']} "
        "within +-10%)" for name, v in result["by_backbone"].items()))
    click.echo(f"MACs-only baseline (fitted): MAPE {b['mape']:.1f}%, "
               f"{100 * b['within_10pct']:.0f}% within +-10%, Spearman {b['spearman']:.3f}")
    if result.get("warning"):
        click.echo(f"warning: {result['warning']}", err=True)
    sys.stdout.flush()
