"""The strict YAML reader every loader goes through (dse/yamlio.py): one line naming file and key."""
from __future__ import annotations

import pytest

from dse.errors import ConfigError
from dse.yamlio import Section, read_yaml


@pytest.mark.parametrize("content, message", [
    (b"a: \xff\n", "not UTF-8 text (byte 0xff at offset 3)"),
    (b"a: 1\x00\n", "not a text file (NUL byte at offset 4)"),
    (b"a: 1\nb: 2\na: 3\n", "invalid YAML at line 3: duplicate key 'a'"),
    (b"a:\n  b: {c: 1, c: 2}\n", "invalid YAML at line 2: duplicate key 'c'"),
    (b"a:\n  b: .nan\n", "a.b must be a finite number, got nan"),
    (b"a: [1, -.inf]\n", "a[1] must be a finite number, got -inf"),
    (b"a: [unclosed\n", "invalid YAML"),
    (b"[a]: 1\n", "invalid YAML at line 1: found unhashable key"),
    (b"[" * 5000, "invalid YAML"),
])
def test_bad_files_are_one_line_naming_file_and_key(tmp_path, content, message):
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {lr: 1, steps: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    assert read_yaml(path) == {"base": {"lr": 1, "steps": 2}, "run": {"lr": 3, "steps": 2}}


def test_a_directory_or_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_yaml(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        read_yaml(tmp_path / "missing.yaml")


def test_numbers_must_be_finite_and_non_string_keys_are_named():
    section = Section({"t": float("nan"), 3: 1}, "c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml: t must be a number, got nan$"):
        section.number("t")
    with pytest.raises(ConfigError, match="^c.yaml: 3 is not a known key"):
        section.done()
