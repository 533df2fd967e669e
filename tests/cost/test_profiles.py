"""Loading, validating and looking up hardware profiles (dse/cost/profiles.py; the checks in
dse/cost/_profile_schema.py)."""
from __future__ import annotations

import pytest
import yaml

from dse.cost.op_trace import OP_KINDS
from dse.cost.profiles import (SHIPPED_DIR, list_profiles, load_profile, parse_profile,
                               profile_to_dict, read_profile)
from dse.errors import ConfigError, UnknownNameError

JETSONS = ["jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-agx-xavier", "jetson-agx-orin"]
REQUIRED = ["raspberry-pi-4", "desktop-cpu", *JETSONS]


@pytest.mark.parametrize("name", REQUIRED)
def test_shipped_profile_loads_with_sources(name):
    p = load_profile(name)
    assert p.name == name and p.default_runtime in p.runtimes
    assert p.device.sources, "device facts need their public source"
    for rt in p.runtimes.values():
        assert rt.sources, f"{name}/{rt.name} needs sources"
        assert set(rt.ops) == set(OP_KINDS)
        assert rt.dtype in p.device.peak_gflops


@pytest.mark.parametrize("name", JETSONS)
def test_jetsons_have_the_required_runtimes(name):
    assert {"pytorch-fp32", "pytorch-fp16", "tensorrt-fp32", "tensorrt-fp16"} <= set(
        load_profile(name).runtimes)


def test_raspberry_pi_runtimes():
    p = load_profile("raspberry-pi-4")
    assert {"pytorch-fp32", "native-fp32"} <= set(p.runtimes)
    assert p.runtime("native-fp32").threads == 4


def test_alias_jetson_is_the_nano_and_list_shows_aliases():
    assert load_profile("jetson").name == "jetson-nano"
    rows = {r["name"]: r for r in list_profiles()}
    assert set(REQUIRED) <= set(rows)
    assert "jetson" in rows["jetson-nano"]["aliases"]


def test_load_by_path_and_roundtrip(tmp_path):
    src = SHIPPED_DIR / "jetson-nano.yaml"
    p = load_profile(str(src))
    out = tmp_path / "copy.yaml"
    out.write_text(yaml.safe_dump(profile_to_dict(p), sort_keys=False))
    again = read_profile(out)
    assert again.runtimes == p.runtimes and again.device == p.device


def test_unknown_names_list_valid_ones():
    with pytest.raises(UnknownNameError, match="jetson-nano.*aliases: .*jetson -> jetson-nano"):
        load_profile("jetson-nanoo")
    with pytest.raises(UnknownNameError, match="no runtime 'tensorrt-int4'.*tensorrt-fp16"):
        load_profile("jetson").runtime("tensorrt-int4")


def test_profiles_dir_env_adds_folders(tmp_path, monkeypatch):
    raw = yaml.safe_load((SHIPPED_DIR / "jetson-nano.yaml").read_text())
    raw.update(name="my-board", aliases=["mine"])
    (tmp_path / "my-board.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("DSE_PROFILES_DIR", str(tmp_path))
    assert load_profile("mine").name == "my-board"
    assert load_profile("jetson-nano").name == "jetson-nano"  # shipped ones still there


def _raw() -> dict:
    return yaml.safe_load((SHIPPED_DIR / "jetson-nano.yaml").read_text())


def _bad(edit) -> str:
    raw = _raw()
    edit(raw)
    with pytest.raises(ConfigError) as info:
        parse_profile(raw, "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ") and "\n" not in message
    return message


def test_unknown_key_is_named():
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"]["ops"]["conv"].update(speed=3))
    assert "runtimes.tensorrt-fp16.ops.conv.speed is not a known key" in msg
    msg = _bad(lambda r: r.update(colour="green"))
    assert "colour is not a known key; expected one of: aliases, default_runtime" in msg


def test_missing_field_is_named():
    msg = _bad(lambda r: r["device"].pop("memory_bandwidth_gbs"))
    assert "device.memory_bandwidth_gbs is missing" in msg
    msg = _bad(lambda r: r["runtimes"]["pytorch-fp32"]["ops"].pop("dwconv"))
    assert "runtimes.pytorch-fp32.ops.dwconv is missing" in msg


def test_negative_and_out_of_range_numbers_are_named():
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"]["ops"]["norm"].update(overhead_us=-1))
    assert "runtimes.tensorrt-fp16.ops.norm.overhead_us must be >= 0, got -1" in msg
    msg = _bad(lambda r: r["device"]["peak_gflops"].update(fp16=-472))
    assert "device.peak_gflops.fp16 must be > 0" in msg
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"]["ops"]["conv"].update(compute_eff=1.5))
    assert "compute_eff must be > 0 and <= 1, got 1.5" in msg


def test_wrong_types_and_references():
    assert "must be a number, got 'fast'" in _bad(
        lambda r: r["runtimes"]["tensorrt-fp16"].update(decision_overhead_us="fast"))
    assert "default_runtime must be one of" in _bad(lambda r: r.update(default_runtime="onnx"))
    assert "dtype must be one of" in _bad(lambda r: r["runtimes"]["tensorrt-fp16"].update(dtype="fp8"))
    assert "has no 'int8' entry" in _bad(lambda r: r["runtimes"]["tensorrt-fp16"].update(dtype="int8"))
    assert "power_mode must be one of" in _bad(
        lambda r: r["runtimes"]["tensorrt-fp16"].update(power_mode="TURBO"))
    assert "fusion must be true or false" in _bad(
        lambda r: r["runtimes"]["tensorrt-fp16"].update(fusion="yes"))


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="profile file does not exist"):
        load_profile(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        read_profile(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: the file must be a mapping"):
        read_profile(listed)


def test_nan_and_infinity_are_refused_by_name():
    msg = _bad(lambda r: r["runtimes"]["tensorrt-fp16"].update(power_w=float("nan")))
    assert "runtimes.tensorrt-fp16.power_w must be a finite number, got nan" in msg
    msg = _bad(lambda r: r["device"].update(memory_bandwidth_gbs=float("inf")))
    assert "device.memory_bandwidth_gbs must be a finite number, got inf" in msg


@pytest.mark.parametrize("content, message", [
    (b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9)"),
    (b"name: a\x00b\n", "not a text file (NUL byte at offset 7)"),
    (b"name: a\nname: b\n", "duplicate key 'name'"),
    (b"name: a\npower_w: .nan\n", "power_w must be a finite number, got nan"),
])
def test_a_broken_file_is_one_line_and_does_not_break_the_list(tmp_path, monkeypatch, content,
                                                              message):
    (tmp_path / "stray.yaml").write_bytes(content)
    monkeypatch.setenv("DSE_PROFILES_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_profile("stray")
    assert str(info.value).startswith(f"{tmp_path / 'stray.yaml'}: ")
    assert message in str(info.value) and "\n" not in str(info.value)
    skipped: list[str] = []
    names = [row["name"] for row in list_profiles(skipped)]
    assert "jetson-nano" in names and "stray" not in names
    assert len(skipped) == 1 and skipped[0].startswith(str(tmp_path / "stray.yaml")) \
        and message in skipped[0]
    assert load_profile("jetson").name == "jetson-nano"  # every other profile still works


def test_profile_list_names_the_skipped_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dse.cli import cli

    (tmp_path / "stray.yaml").write_bytes(b"\xff\xfe")
    monkeypatch.setenv("DSE_PROFILES_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["profile", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {tmp_path / 'stray.yaml'}: not UTF-8 text" in result.stderr
    assert "jetson-nano" in result.stdout
