"""The Python API (:mod:`dse.api`): the README's example runs, errors raise DseError, the lazy
top-level names resolve without breaking ``dse.search`` the subpackage, help documents every
argument."""
from __future__ import annotations

import functools
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dse.api
from dse.api import evaluate, finetune, latency, search, train
from dse.design import ExitDesign, RunConfig
from dse.errors import ConfigError, DseError

ROOT = Path(__file__).resolve().parents[1]
TINY_SPACE = ROOT / "tests" / "search" / "data" / "tiny.yaml"


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path, monkeypatch, digits_checkpoint, capsys):
    # the example runs as written; only the backbone weights (trained in seconds by the
    # session fixture) and a tiny search space are pinned to keep it short
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dse.api, "search", functools.partial(
        search, checkpoint=digits_checkpoint, space=str(TINY_SPACE)))
    exec(compile(readme_block("## Python API"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "['accuracy', 'latency_ms']" in out
    assert re.search(r"test accuracy \d+\.\d\d% at \d+\.\d+ M MACs", out)
    assert "error: " in out and "no-such-board" in out
    assert (tmp_path / "reports" / "api-demo" / "pareto.csv").is_file()


@pytest.mark.parametrize("call, message", [
    (lambda: latency(profile="jetson", exits=-1), "exits must be an integer >= 0, got -1"),
    (lambda: latency(profile="no-such-board"), "no-such-board"),
    (lambda: search(trials=0), "trials must be an integer >= 1, got 0"),
    (lambda: search(sampler="grid"), "sampler must be one of tpe, nsga2, random, got 'grid'"),
    (lambda: search(budget_ms=float("nan")), "budget_ms must be a finite number > 0"),
    (lambda: search(shift="blur"), "unknown shift 'blur'"),
    (lambda: train("missing.yaml"), "missing.yaml"),
    (lambda: evaluate("missing.pt"), "missing.pt"),
    (lambda: dse.api.thresholds("missing.pt"), "missing.pt"),
    (lambda: dse.api.thresholds("m.pt", budget_ms=1, max_drop=1), "give one of --objective"),
    (lambda: train("missing.yaml", retune="yes"), "retune must be True, False or"),
    (lambda: dse.api.trial_config("nosuch", 0), "no such file"),
    (lambda: finetune("missing.yaml", shift="jitter"), "missing.yaml"),
])
def test_user_errors_raise_dse_errors_not_system_exit(tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DseError, match=re.escape(message)):
        call()


def test_a_run_config_object_needs_an_out_folder(tmp_path):
    config = RunConfig(backbone="digits-resnet", dataset="digits", exits=ExitDesign(count=1))
    with pytest.raises(ConfigError, match="out is required"):
        train(config, epochs=1)


def test_latency_matches_the_command(tmp_path):
    import json

    from click.testing import CliRunner

    from dse.cli import cli
    r = latency(profile="jetson", exits=2)
    cli_out = CliRunner().invoke(cli, ["latency", "--profile", "jetson", "--exits", "2", "--json"])
    assert cli_out.exit_code == 0, cli_out.output
    assert json.loads(cli_out.stdout) == json.loads(json.dumps(r))
    assert len(r["exits"]) == 3 and r["exits"][-1]["final"]


def test_every_argument_is_documented():
    for fn in (search, train, finetune, evaluate, latency, dse.api.export, dse.api.run,
               dse.api.thresholds, dse.api.trial_config):
        doc = inspect.getdoc(fn)
        for name in inspect.signature(fn).parameters:
            assert re.search(rf"^\s+{name}:", doc, re.M), f"{fn.__name__}: {name} undocumented"


@pytest.mark.slow
def test_import_dse_is_light_and_names_resolve_lazily():
    code = ("import sys, dse; assert 'torch' not in sys.modules; "
            "import dse.search.pareto; assert 'torch' not in sys.modules; "
            "assert dse.DSEError is dse.errors.DseError; "
            "import types; assert isinstance(dse.search, types.ModuleType); "
            "from dse.api import search; assert dse.run_search is search; "
            "assert callable(dse.evaluate) and callable(dse.latency); "
            "assert 'search' in dse.api.search.__doc__")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
    help_text = subprocess.run([sys.executable, "-c", "import dse; help(dse.run_search)"],
                               capture_output=True, text=True, cwd=ROOT,
                               env={"PYTHONPATH": str(ROOT), "PATH": "", "PAGER": "cat"}).stdout
    assert "budget_ms:" in help_text and "progress:" in help_text


@pytest.mark.slow
def test_export_and_run_are_the_commands(tmp_path, digits_checkpoint):
    """dse.api.export / dse.api.run give what `dse export --json` / `dse run --json` print."""
    import json

    from click.testing import CliRunner

    from dse.api import export, run
    from dse.cli import cli
    from dse.design import ExitPolicy

    config = RunConfig("digits-resnet", "digits", ExitDesign(2, blocks=(1, 3)),
                       policy=ExitPolicy("maxprob", (0.8,)), checkpoint=digits_checkpoint)
    trained = train(config, epochs=1, out=tmp_path / "train")
    bundle = export(trained.model_path)
    assert Path(bundle["bundle"]) == trained.model_path.parent / "bundle"
    cli_out = CliRunner().invoke(cli, ["export", "--checkpoint", str(trained.model_path),
                                       "--out", str(tmp_path / "b2"), "--json"])
    assert cli_out.exit_code == 0, cli_out.output
    assert json.loads(cli_out.stdout)["manifest"]["exits"] == bundle["manifest"]["exits"]
    r = run(bundle["bundle"], limit=20, warmup=0)
    assert r["images"] == 20 and 0 <= r["accuracy"] <= 100
    with pytest.raises(DseError, match="nowhere"):
        run(tmp_path / "nowhere")


def test_latency_of_a_one_thread_host_profile_ignores_the_process_thread_count(tmp_path):
    """A calibrated host runtime (threads: 1) prices eager PyTorch's im2col path for 1x1
    convolutions apart; the prediction must not depend on how many threads the predicting
    process runs (a search trains on every core)."""
    import dataclasses

    import torch

    from dse.cost.calibrate import write_profile
    from dse.cost.profiles import load_profile

    base = load_profile("desktop-cpu")
    rt = base.runtime()
    slow = dataclasses.replace(rt.ops["conv"], overhead_us=rt.ops["conv"].overhead_us + 100.0)
    host = dataclasses.replace(rt, threads=1, ops={**rt.ops, "conv_gemm": slow})
    profile = dataclasses.replace(base, runtimes={rt.name: host}, fitted_to=())
    path = write_profile(profile, tmp_path / "h.yaml")
    before = torch.get_num_threads()
    try:
        got = []
        for n in (2, 1):
            torch.set_num_threads(n)
            got.append(latency(profile=str(path), backbone="mobilenetv2", exits=1)["exits"])
    finally:
        torch.set_num_threads(before)
    assert got[0] == got[1]
