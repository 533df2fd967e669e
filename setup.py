"""Package layout: every ``dse`` package, plus the repository's YAML folders shipped inside it.

Metadata, dependencies and entry points live in setup.cfg. This file exists because setup.cfg's
``packages = find:`` cannot also list packages whose files sit outside ``dse/``: the top-level
``search_spaces/`` and ``hardware_profiles/`` folders (where users find and edit them) are
installed as ``dse/search_spaces/`` and ``dse/hardware_profiles/``, which dse/resources.py reads.
"""
from setuptools import find_packages, setup

#: package inside dse -> the repository folder that holds its YAML files
YAML_FOLDERS = {"dse.search_spaces": "search_spaces", "dse.hardware_profiles": "hardware_profiles"}

setup(
    packages=[*find_packages(include=["dse", "dse.*"]), *YAML_FOLDERS],
    package_dir=YAML_FOLDERS,
    package_data={"dse": ["py.typed"], **{package: ["*.yaml"] for package in YAML_FOLDERS}},
)
