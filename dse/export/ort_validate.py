"""``dse profile validate --runtime onnxruntime``: the model against exported bundles timed here.

The cases are the PyTorch validation's (:func:`dse.cost.validate.default_cases`: backbones x
exit configurations, seeded random weights). Each is saved as a ``dse train`` model file,
exported by ``dse export``'s own code (:func:`dse.export.bundle.export_bundle`: one ONNX graph
per backbone segment and per exit head, the manifest) and opened by the bundle runner
(:func:`dse.export.run.open_bundle`, the code ``dse run`` uses and bundles ship). Every exit is
timed through :meth:`dse.export.runner.Bundle.infer` at batch 1 with thresholds that force
that exit, by the shared harness (:mod:`dse.cost.harness`: round robin over a case's exits,
passes over all cases, a robust statistic, pinned intra-op threads), and compared with the
profile runtime's prediction (:func:`dse.cost.latency.predict`). Reported as for PyTorch
(:func:`dse.cost.validate.report`): MAPE, the share within +-10 %, Spearman, the MACs-only
baseline and ``repeatability``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dse.cost.assemble import InputSpec
from dse.cost.microbench import clock_name, reference_op, timer
from dse.cost.profiles import Profile, Runtime
from dse.cost.validate import (Case, CaseExits, ValidationSettings, case_model, compare,
                               default_cases, load_average, reference_name, time_exits)
from dse.design import ExitDesign, ExitPolicy, LossSpec, RunConfig, TrainingSpec
from dse.device import available_cpus, set_threads
from dse.errors import UnknownNameError
from dse.export.bundle import export_bundle
from dse.export.ort_bench import DEFAULT_PROVIDER, check_provider, exit_calls, op_runner
from dse.export.run import open_bundle
from dse.train.model_file import save_model

#: Prefix of the profile runtimes measured through ONNX Runtime (``onnxruntime-cpu-fp32``, ...).
ORT_PREFIX = "onnxruntime"


def is_ort_runtime(name: str) -> bool:
    """Whether a profile runtime is measured through ONNX Runtime (its name says so)."""
    return name == ORT_PREFIX or name.startswith(ORT_PREFIX + "-")


def resolve_runtime(profile: Profile, runtime: str | None, provider: str | None) -> Runtime:
    """The profile runtime ``--runtime`` names; ``onnxruntime`` picks the profile's ONNX Runtime
    runtime (the one for ``provider`` when there are several)."""
    if runtime != ORT_PREFIX or ORT_PREFIX in profile.runtimes:
        return profile.runtime(runtime)
    ort = [name for name in profile.runtimes if is_ort_runtime(name)]
    if provider:
        short = provider.removesuffix("ExecutionProvider").lower()
        ort = [name for name in ort if f"-{short}-" in name] or ort
    if len(ort) == 1:
        return profile.runtime(ort[0])
    if not ort:
        raise UnknownNameError(f"profile {profile.name!r} has no ONNX Runtime runtime (runtimes: "
                               f"{', '.join(profile.runtimes)}); fit one with 'dse profile "
                               "calibrate --runtime onnxruntime'")
    raise UnknownNameError(f"profile {profile.name!r} has several ONNX Runtime runtimes "
                           f"({', '.join(ort)}); name one with --runtime")


def validate_ort(profile: Profile, runtime: str | None = None,
                 settings: ValidationSettings = ValidationSettings(),
                 provider: str = DEFAULT_PROVIDER, cases: Sequence[Case] | None = None,
                 log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Time every case's exported bundle here through ONNX Runtime and compare with the model."""
    rt = resolve_runtime(profile, runtime, provider)
    check_provider(provider)
    threads = settings.threads or rt.threads or available_cpus()
    set_threads(threads)
    clock = timer(settings.clock, threads) if provider == DEFAULT_PROVIDER else time.perf_counter
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="dse-ort-validate-") as tmp:
        exits = ort_exits(settings, Path(tmp), provider, threads, cases, log)
        ref = (op_runner(*reference_op(reference_name(rt)), threads, provider)
               if settings.reference else None)
        timing = time_exits(exits.groups, settings, clock, log, rt, ref)
    return compare(profile, rt, exits, timing, settings, threads=threads,
                   clock=clock_name(clock),
                   load_before=load_before, engine="onnxruntime", provider=provider)


def ort_exits(settings: ValidationSettings, folder: Path, provider: str, threads: int,
              cases: Sequence[Case] | None = None,
              log: Callable[[str], None] = lambda _: None) -> CaseExits:
    """Every case exported as a bundle under ``folder`` (which must outlive the timing) and
    opened in ONNX Runtime sessions, with the bundle runner's calls that run it out of each exit
    (:func:`dse.export.ort_bench.exit_calls`)."""
    built, groups = [], []
    for i, case in enumerate(cases or default_cases(settings.quick)):
        log(f"exporting {case.backbone} with {case.num_exits} exit(s) ...")
        model, inputs, exit_macs = case_model(case)
        case_folder = _export_case(case, model, inputs, exit_macs, settings.criterion,
                                   folder / f"case{i}")
        bundle = open_bundle(case_folder / "bundle", provider, threads)
        x = np.random.default_rng(i).standard_normal((1, *inputs.shape)).astype(np.float32)
        groups.append(tuple(exit_calls(bundle, x)))
        built.append((case, model, inputs, tuple(exit_macs)))
    return CaseExits(tuple(built), tuple(groups))


def _export_case(case: Case, model: Any, inputs: InputSpec, exit_macs: Sequence[int], criterion: str,
                 folder: Path) -> Path:
    """Save ``model`` as a model file and export it with ``dse export``'s code to
    ``folder/bundle`` (criterion thresholds are placeholders: timing forces every exit)."""
    folder.mkdir(parents=True)
    blocks = tuple(int(b) for b in model.exit_blocks)
    n = len(blocks)
    config = RunConfig(backbone=case.backbone, dataset="random",
                       exits=ExitDesign(n, case.placement, None, blocks, case.branch, ()),
                       training=TrainingSpec(loss=LossSpec("ce", {}, False)),
                       policy=ExitPolicy(criterion, (0.5,) if n else ()), seed=0)
    spec = {"dataset": None, "dataset_name": "random", "num_classes": inputs.num_classes,
            "in_channels": inputs.in_channels, "input_size": inputs.input_size,
            "class_names": [str(i) for i in range(inputs.num_classes)],
            "mean": [0.0] * inputs.in_channels, "std": [1.0] * inputs.in_channels}
    path = save_model(folder / "model.pt", model, config, spec, {}, {}, list(exit_macs))
    with torch.no_grad():
        export_bundle(path, folder / "bundle")
    return folder
