"""``dse cache list|prune``: what the dse cache folder holds, and removing old feature files.

Feature caches are GiB per study at CIFAR size and the cache never shrinks by itself; pruning
is explicit (our choice: a study's files are only known to be unused when the user says so).
Only feature files are pruned; trained default backbones stay.
"""
from __future__ import annotations

import time

import click

from dse.cache import cache_dir
from dse.cli import options
from dse.cli.output import echo_json, table
from dse.train.cache_files import list_files, parse_size, remove, select_prune, stale_temporaries


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


@click.group("cache")
def command() -> None:
    """List the dse cache ($DSE_CACHE) and prune its feature files."""


@command.command("list")
@options.json_flag
def list_cmd(as_json: bool) -> None:
    """Every cached file with its size and age, newest (most recently used) first."""
    root, now = cache_dir(), time.time()
    files = list_files(root)
    total = sum(f.bytes for f in files)
    if as_json:
        echo_json({"folder": str(root), "total_bytes": total, "files": [
            {"kind": f.kind, "path": str(f.path), "bytes": f.bytes,
             "age_days": round(f.age_days(now), 3)} for f in files]})
        return
    rows = [(f.kind, f.path.name[:24], _mib(f.bytes), f"{f.age_days(now):.1f}") for f in files]
    click.echo(table(["kind", "file", "MiB", "age (days)"], rows))
    click.echo(f"{len(files)} files, {_mib(total)} MiB in {root}")


@command.command("prune")
@click.option("--keep", type=click.IntRange(min=0), default=None,
              help="Keep the N most recently used feature files (a study uses 3: train, val, "
                   "test).")
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), default=None,
              help="Remove feature files unused for more than DAYS days.")
@click.option("--max-size", "max_size", default=None,
              help="Keep the most recently used feature files up to SIZE in total (e.g. 20G).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@options.json_flag
def prune_cmd(keep: int | None, older_than: float | None, max_size: str | None, dry_run: bool,
              as_json: bool) -> None:
    """Remove feature files (and unfinished temporary files older than a day)."""
    max_bytes = parse_size(max_size) if max_size is not None else None
    root, now = cache_dir(), time.time()
    chosen = select_prune(list_files(root), keep=keep, older_than_days=older_than,
                          max_bytes=max_bytes, now=now)
    temps = stale_temporaries(root, now)
    freed = sum(f.bytes for f in chosen) + sum(p.stat().st_size for p in temps)
    if not dry_run:
        remove(chosen)
        for p in temps:
            p.unlink(missing_ok=True)
    if as_json:
        echo_json({"folder": str(root), "removed": [str(f.path) for f in chosen] +
                   [str(p) for p in temps], "freed_bytes": freed, "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(chosen) + len(temps)} files, {_mib(freed)} MiB from {root}")
