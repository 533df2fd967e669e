from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dse.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_inspect_json_keys_and_numbers():
    result = run("inspect", "--backbone", "resnet20", "--exits", "3", "--placement", "pareto",
                 "--branch", "pool", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"backbone", "input_size", "total_macs", "params", "blocks", "exits"} <= set(data)
    assert data["backbone"] == "resnet20" and data["input_size"] == 32
    assert abs(data["total_macs"] - 41e6) / 41e6 < 0.03
    assert len(data["blocks"]) == 10 and len(data["exits"]) == 3
    assert set(data["blocks"][0]) == {"index", "name", "macs", "cum_macs"}
    assert set(data["exits"][0]) == {"index", "block", "target_fraction", "fraction",
                                      "branch_macs", "cum_macs", "params"}
    assert [round(e["target_fraction"], 3) for e in data["exits"]] == [0.2, 0.36, 0.488]
    cums = [e["cum_macs"] for e in data["exits"]]
    assert cums == sorted(cums)
    assert data["uncounted_ops"].get("aten::add") == 9  # reported, not silently dropped


def test_inspect_table_and_input_size():
    result = run("inspect", "--backbone", "resnet8", "--exits", "1", "--input-size", "16")
    assert result.exit_code == 0, result.output
    assert "3x16x16 input" in result.output and "exit 1" in result.output


@pytest.mark.parametrize("args, message", [
    (["--backbone", "resnet7"], "unknown backbone 'resnet7'"),
    (["--backbone", "resnet20", "--branch", "dense"], "unknown branch 'dense'"),
    (["--backbone", "resnet20", "--exits", "2", "--placement", "cubic"], "unknown placement 'cubic'"),
    (["--backbone", "resnet20", "--exits", "12"], "12 exits requested but the backbone has only 8"),
    (["--backbone", "resnet20", "--placement", "explicit", "--positions", "0.2,z"], "'z' is not a number"),
    (["--backbone", "resnet20", "--checkpoint", "/nonexistent.pt"], "no such file"),
])
def test_inspect_errors_are_one_line_exit_2(args, message):
    result = run("inspect", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00\x01garbage")
    result = run("inspect", "--backbone", "resnet8", "--checkpoint", str(bad))
    assert result.exit_code == 2
    assert f"checkpoint {bad}: not a readable torch checkpoint" in result.output
