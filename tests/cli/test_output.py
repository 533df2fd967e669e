"""What the commands print: tables fit 100 columns with every column named, one message per
event, and the thread default follows the CPU affinity."""
from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner

from dse.cli import cli
from dse.cli.output import table
from dse.cost.profiles import load_profile
from dse.device import available_cpus, set_threads


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_profile_list_fits_100_columns():
    result = run("profile", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert lines[0].split() == ["profile", "aliases", "runtime", "description"]
    # the default runtime, then how many more the profile has (as many as its YAML lists)
    others = len(load_profile("jetson-nano").runtimes) - 1
    assert any(line.startswith("jetson-nano ") and f"tensorrt-fp16 (+{others})" in line
               for line in lines)


def test_every_inspect_column_is_named():
    result = run("inspect", "--backbone", "resnet20", "--exits", "2")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("block "))
    assert header.split() == ["block", "name", "M", "MACs", "cum", "M", "MACs", "cum", "%",
                              "early", "exit"]
    assert "exit 1" in result.stdout and "exit 2" in result.stdout


def test_a_table_refuses_an_unnamed_column():
    with pytest.raises(ValueError, match="every table column needs a name"):
        table(["a", " "], [[1, 2]])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_thread_default_is_the_cpu_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert available_cpus() == 1
    assert set_threads(None) == 1 and torch.get_num_threads() == 1
    assert set_threads(2) == 2
