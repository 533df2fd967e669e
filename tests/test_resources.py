"""dse.resources: the shipped YAML folders in a source checkout and in an installed package."""
from __future__ import annotations

from pathlib import Path

import pytest

from dse import resources
from dse.cost.profiles import SHIPPED_DIR
from dse.search.space import SPACES_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_uses_the_repository_folders():
    assert resources.shipped_spaces() == ROOT / "search_spaces" == SPACES_DIR
    assert resources.shipped_profiles() == ROOT / "hardware_profiles" == SHIPPED_DIR
    assert (SPACES_DIR / "default.yaml").is_file() and (SHIPPED_DIR / "jetson-nano.yaml").is_file()


@pytest.mark.parametrize("folder, find", [("search_spaces", resources.shipped_spaces),
                                          ("hardware_profiles", resources.shipped_profiles)])
def test_installed_package_folder_comes_first(tmp_path, monkeypatch, folder, find):
    """A wheel puts the folder inside the package; the checkout's folder is only the fallback."""
    package = tmp_path / "site-packages" / "dse"
    monkeypatch.setattr(resources, "files", lambda name: package)
    package.mkdir(parents=True)
    assert find() == ROOT / folder
    (package / folder).mkdir()
    assert find() == package / folder
