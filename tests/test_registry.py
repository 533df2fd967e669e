from __future__ import annotations

import pytest

from dse.errors import DseError, UnknownNameError
from dse.registry import Registry


def test_register_get_names_and_aliases():
    reg: Registry[int] = Registry("thing")
    reg.register("one", "uno")(1)
    reg.add("two", 2)
    assert reg.get("one") == 1 and reg.get("uno") == 1 and reg.get("two") == 2
    assert reg.names() == ["one", "two"]
    assert reg.resolve("uno") == "one"
    assert "uno" in reg and "three" not in reg


def test_duplicate_names_are_refused():
    reg: Registry[int] = Registry("thing")
    reg.add("one", 1, "uno")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("one", 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("other", 2, "uno")


def test_unknown_name_lists_valid_names():
    reg: Registry[int] = Registry("thing")
    reg.add("one", 1)
    reg.add("two", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("three")
    assert isinstance(info.value, DseError)
    assert str(info.value) == "unknown thing 'three'; expected one of: one, two"
