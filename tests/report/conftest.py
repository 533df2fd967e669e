"""A fake study in the storage schema of the search (/tmp/schema.md), built in memory.

Trials are made with ``optuna.trial.create_trial`` and carry every user attribute the report
reads, so the report is tested without running a search.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import optuna
import pypdf
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec
from dse.design import LossSpec

BLOCK_MACS = [9216, 294912, 294912, 229376, 294912, 229376, 294912]
MS_PER_MAC = 1e-6 / 0.8  # 1 ms per 0.8 M MACs


def study_attrs(objectives, budget_ms=1.6, max_drop=10.0) -> dict:
    return {
        "dse_version": "0.1.0", "backbone": "digits-resnet", "checkpoint": None,
        "dataset": "digits", "input_size": 8, "in_channels": 1, "num_classes": 10, "seed": 0,
        "profile": "jetson-nano", "profile_path": "hardware_profiles/jetson-nano.yaml",
        "runtime": "pytorch-fp32", "batch": 1, "space_file": "search_spaces/default.yaml",
        "space": {"exits": {"min": 1, "max": 5}, "branch": ["pool", "bnpool", "convx"]},
        "objectives": list(objectives), "budget_ms": budget_ms, "max_drop": max_drop,
        "backbone_val_accuracy": 98.5, "backbone_test_accuracy": 99.0,
        "backbone_latency_ms": sum(BLOCK_MACS) * MS_PER_MAC, "backbone_macs": sum(BLOCK_MACS),
        "backbone_energy_mj": 4.2, "block_macs": BLOCK_MACS, "created": "2025-01-01T00:00:00",
    }


DISTRIBUTIONS = {
    "num_exits": IntDistribution(1, 5),
    "placement": CategoricalDistribution(["pareto", "linear", "golden"]),
    "branch": CategoricalDistribution(["pool", "bnpool", "convx"]),
    "threshold": FloatDistribution(0.5, 0.99),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
}


def fake_trial(rng: np.random.Generator, number: int, objectives, budget_ms, max_drop) -> optuna.trial.FrozenTrial:
    n_early = int(rng.integers(1, 6))
    blocks = sorted(rng.choice(6, size=n_early, replace=False).tolist())
    branch = str(rng.choice(["pool", "bnpool", "convx"]))
    placement = str(rng.choice(["pareto", "linear", "golden"]))
    threshold = float(rng.uniform(0.5, 0.99))
    lr = float(10 ** rng.uniform(-4, -1))
    params = {"num_exits": n_early, "placement": placement, "branch": branch,
              "threshold": threshold, "lr": lr}
    dists = dict(DISTRIBUTIONS)
    if branch == "convx":  # a conditional parameter, as in the real space
        params["convx_depth"] = int(rng.integers(1, 3))
        dists["convx_depth"] = IntDistribution(1, 2)
    cum = np.cumsum(BLOCK_MACS)
    exit_macs = [int(cum[b] + 1200 * (i + 1)) for i, b in enumerate(blocks)] + [int(cum[-1] + 1200 * n_early)]
    exit_lat = [m * MS_PER_MAC for m in exit_macs]
    fr = rng.dirichlet(np.ones(n_early + 1) * (0.5 + 2 * threshold))
    per_exit = sorted(rng.uniform(40, 98.5, size=n_early).tolist()) + [98.5]
    lat = float(np.dot(fr, exit_lat))
    full_ms = sum(BLOCK_MACS) * MS_PER_MAC
    acc = float(np.clip(60 + 40 * np.sqrt(lat / full_ms) + rng.normal(0, 2), 50, 99))
    macs = float(np.dot(fr, exit_macs))
    energy = lat * 3.0
    values_by_name = {"accuracy": acc, "latency_ms": lat, "macs": macs, "energy_mj": energy}
    ts = np.linspace(0.3, 1.0, 25)
    sweep_lat = np.linspace(exit_lat[0], exit_lat[-1], 25)
    sweep_acc = np.linspace(per_exit[0], 98.5, 25)
    config = RunConfig(
        backbone="digits-resnet", dataset="digits",
        exits=ExitDesign(n_early, placement, None, tuple(blocks), branch,
                         (("depth", params["convx_depth"]), ("width", None)) if branch == "convx" else ()),
        training=TrainingSpec(loss=LossSpec("kd", {"alpha": 0.5}), lr=lr, steps=50),
        policy=ExitPolicy("maxprob", (threshold,)),
        provenance=(("study", "fake"), ("trial", number)))
    attrs = {
        "config": config.to_dict(), "blocks": blocks,
        "val_accuracy": acc, "test_accuracy": acc - 0.3,
        "exit_fractions": fr.tolist(), "test_exit_fractions": fr.tolist(),
        "per_exit_accuracy": list(per_exit),
        "test_per_exit_accuracy": list(per_exit),
        "expected_latency_ms": lat, "test_expected_latency_ms": lat * 1.01,
        "expected_macs": macs, "expected_energy_mj": energy, "exit_latency_ms": exit_lat,
        "exit_macs": exit_macs, "exit_energy_mj": [v * 3.0 for v in exit_lat],
        "sweep": {"criterion": "maxprob", "thresholds": ts.tolist(), "accuracy": sweep_acc.tolist(),
                  "latency_ms": sweep_lat.tolist(), "macs": (sweep_lat / MS_PER_MAC).tolist()},
        "duration_s": 1.5,
    }
    constraints = {}
    if budget_ms is not None:
        constraints["budget_ms"] = lat - budget_ms
    if max_drop is not None:
        constraints["max_drop"] = (98.5 - acc) - max_drop
    attrs["constraint"] = list(constraints.values())
    return optuna.trial.create_trial(
        values=[values_by_name[o] for o in objectives], params=params, distributions=dists,
        user_attrs=attrs, constraints=constraints or None)


def make_study(n_trials: int = 24, objectives=("accuracy", "latency_ms", "macs"), n_failed: int = 2,
               seed: int = 0, name: str = "fake-study", budget_ms=1.6, max_drop=10.0,
               storage: str | None = None) -> optuna.Study:
    directions = ["maximize"] + ["minimize"] * (len(objectives) - 1)
    study = optuna.create_study(study_name=name, directions=directions, storage=storage)
    for k, v in study_attrs(objectives, budget_ms, max_drop).items():
        study.set_user_attr(k, v)
    rng = np.random.default_rng(seed)
    for i in range(n_trials):
        study.add_trial(fake_trial(rng, i, objectives, budget_ms, max_drop))
    for i in range(n_failed):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "loss became nan at step 3"}))
    return study


@pytest.fixture
def fake_study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return make_study()


@pytest.fixture
def tiny_study() -> optuna.Study:
    """One complete trial: importances and fronts must degrade gracefully."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return make_study(n_trials=1, objectives=("accuracy", "latency_ms"), n_failed=0, name="tiny")


def pdf_pages(path) -> int:
    return len(pypdf.PdfReader(path).pages)


def pdf_text(path) -> str:
    """Text drawn in a PDF (pypdf), page after page; ligatures normalised (U+FB01 -> "fi")."""
    pages = pypdf.PdfReader(path).pages
    return unicodedata.normalize("NFKC", "\n".join(page.extract_text() for page in pages))


def has_text(text: str, phrase: str) -> bool:
    """``phrase`` in extracted PDF text; a ligature (ff, fi, fl, ffi, ffl) is drawn as one glyph
    without a character code, so it may extract as one unknown character."""
    parts = re.split(r"(ffi|ffl|ff|fi|fl)", phrase)
    pattern = "".join(f"(?:{p}|[^\\w\\s])" if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.search(pattern, text) is not None


class PdfReader:
    pages = staticmethod(pdf_pages)
    text = staticmethod(pdf_text)
    has = staticmethod(has_text)


@pytest.fixture
def pdf() -> PdfReader:
    """Page count and text of a PDF (read with pypdf)."""
    return PdfReader()


@pytest.fixture
def study_factory():
    """``study_factory(**kwargs)``: :func:`make_study` (trials, objectives, failures, name...)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return make_study


