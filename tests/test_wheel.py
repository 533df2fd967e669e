"""The built wheel works on its own: it carries the shipped search spaces and hardware profiles,
and, installed (not editable) into a fresh virtualenv, ``dse`` runs from an unrelated folder.

Slow (about a minute, most of it training the default backbone once): builds the wheel offline
with the running environment's setuptools (>= 70.1, in the ``test`` extra: it builds wheels
without the ``wheel`` package), creates a virtualenv from the same base interpreter, installs the
wheel there with ``pip --python`` and ``--no-deps``, then makes the running environment's
site-packages visible to it through a ``.pth`` file, so torch and the other dependencies are not
installed again. Only the new virtualenv's own site-packages holds ``dse``: a ``.pth`` entry
adds a folder to ``sys.path`` after it and does not run the ``.pth`` files inside that folder, so
an editable install of the running environment stays invisible.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: the repository folders whose YAML files the wheel must carry, as dse/<folder>/
YAML_FOLDERS = ("search_spaces", "hardware_profiles")
#: what the build reads; copied so that the build writes nothing into the repository
BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "dse", *YAML_FOLDERS)


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would put the repository's dse first."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "DSE_PROFILES_DIR")}
    return {**env, **extra}


def _run(*cmd: str | Path, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(**extra_env),
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _shipped_yaml() -> set[str]:
    """``dse/<folder>/<name>.yaml`` for every YAML file in the repository's two folders."""
    names = {f"dse/{folder}/{p.name}" for folder in YAML_FOLDERS
             for p in (ROOT / folder).glob("*.yaml")}
    assert len(names) >= 10, names  # 3 spaces and 7 profiles today: the glob found the folders
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the repository's build inputs (offline, no build isolation)."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--wheel-dir", dist, src, cwd=src)
    wheels = sorted(dist.glob("dse-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> SimpleNamespace:
    """A fresh virtualenv with the wheel installed (not editable) and the running environment's
    dependencies visible; ``site`` is its site-packages, ``scripts`` its bin folder."""
    root = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", root, cwd=root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    paths = json.loads(_run(python, "-c", "import json, sysconfig; print(json.dumps("
                            "sysconfig.get_paths()))", cwd=root).stdout)
    # Installed before the .pth exists, so pip sees an empty environment and never the
    # running environment's dse.
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", wheel, cwd=root)
    here = sysconfig.get_paths()
    deps = dict.fromkeys([here["purelib"], here["platlib"]])  # the same folder in a venv
    Path(paths["purelib"], "zz_dse_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    return SimpleNamespace(python=python, site=Path(paths["purelib"]).resolve(),
                           scripts=Path(paths["scripts"]))


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """An unrelated working folder: no dse/, search_spaces/ or hardware_profiles/ in it."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_wheel_carries_every_shipped_yaml_and_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _shipped_yaml() <= names, sorted(_shipped_yaml() - names)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dse").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "dse/py.typed" in names
    assert not any(n.startswith(YAML_FOLDERS) for n in names)  # only inside the package


def test_installed_dse_is_the_wheels_copy(venv, elsewhere):
    code = ("import json, dse, dse.resources as r; print(json.dumps([dse.__file__, "
            "str(r.shipped_spaces()), str(r.shipped_profiles())]))")
    out = _run(venv.python, "-c", code, cwd=elsewhere).stdout
    module, spaces, profiles = (Path(p).resolve() for p in json.loads(out))
    assert module == venv.site / "dse" / "__init__.py"
    assert spaces == venv.site / "dse" / "search_spaces"
    assert profiles == venv.site / "dse" / "hardware_profiles"
    assert ROOT not in module.parents


def test_profile_list_from_an_unrelated_folder(venv, elsewhere):
    out = _run(venv.scripts / "dse", "profile", "list", "--json", cwd=elsewhere).stdout
    listed = {row["name"] for row in json.loads(out)}
    assert listed == {p.stem for p in (ROOT / "hardware_profiles").glob("*.yaml")}


def test_three_trial_search_from_an_unrelated_folder(venv, elsewhere, tmp_path):
    out = elsewhere / "study"
    _run(venv.scripts / "dse", "search", "--profile", "jetson", "--trials", "3", "--out", out,
         cwd=elsewhere, DSE_CACHE=str(tmp_path / "cache"))
    with open(out / "trials.csv", newline="") as f:
        states = [row["state"] for row in csv.DictReader(f)]
    assert states.count("COMPLETE") == 3, states
    assert (out / "report.pdf").is_file()
