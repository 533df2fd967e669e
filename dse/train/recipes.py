"""Training recipes that chain ``dse train`` runs: IMTA's two phases (``dse train --recipe imta``).

IMTA (Li et al., "Improved Techniques for Training Adaptive Deep Networks", ICCV 2019; the
authors' ``run_GE.sh`` then ``run_IMTA.sh`` in ``kalviny/IMTA``) trains in two phases:

1. **Phase 1**, ``<out>/phase1``: the whole network with gradient equilibrium and the plain sum
   of every classifier's cross-entropy (``joint`` mode, GE on, loss ``ce`` uniform).
2. **Phase 2**, ``<out>/phase2``: the backbone's blocks frozen, every classifier (the early
   exits and the final head) re-trained from phase 1's weights with inline subnetwork
   collaboration (on every later classifier, the final one included) and one-for-all knowledge
   distillation from phase 1's final classifier (frozen):
   L = CE(z_E, t) + sum_{i<E} [alpha CE(z_i, t) + (1 - alpha) T^2 KL(p_teacher || p_i)]
   (loss ``kd``; IMTA's ``gamma`` is 1 - alpha, its defaults gamma = 0.1, T = 1).

Each phase has its own epochs and learning rate; everything else (batch size, schedule,
augmentation, seed) is shared. Phase 2's ISC is IMTA's learned transform by default
(:class:`~dse.models.multiexit.IscTransform`, Linear-BN-ReLU from the previous classifier's
logits, started fresh); ``isc_transform="add"`` takes dse's parameter-free form instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dse.design import LossSpec, RunConfig
from dse.errors import ConfigError
from dse.train.full import METRICS, MODEL, TrainResult, train_config
from dse.train.options import TrainOptions
from dse.yamlio import to_plain

RECIPES = ("plain", "imta")
#: IMTA's phase-2 distillation (run_IMTA.sh: -T 1.0 --gamma 0.1, alpha = 1 - gamma)
IMTA_ALPHA, IMTA_TEMPERATURE = 0.9, 1.0


@dataclass(frozen=True)
class ImtaPhases:
    """Per-phase epochs and peak learning rates (None: the joint mode's default lr)."""

    epochs1: int = 30
    epochs2: int = 30
    lr1: float | None = None
    lr2: float | None = None
    alpha: float = IMTA_ALPHA
    temperature: float = IMTA_TEMPERATURE
    isc_transform: str = "learned"      # phase 2's ISC: IMTA's learned transform, or "add"


def imta_configs(config: RunConfig, phases: ImtaPhases) -> tuple[RunConfig, RunConfig]:
    """(phase-1, phase-2) configurations: ``ce`` for phase 1, ``kd`` + ISC for phase 2."""
    if config.training.labels == "pseudo":
        raise ConfigError("--recipe imta trains the backbone in phase 1: labels: pseudo would "
                          "teach it its own predictions; use ground_truth labels")
    one = replace(config.training, loss=LossSpec("ce", {"weights": "uniform"}, False))
    two = replace(config.training, loss=LossSpec(
        "kd", {"alpha": phases.alpha, "temperature": phases.temperature}, True))
    return replace(config, training=one), replace(config, training=two)


def imta_options(base: TrainOptions, phases: ImtaPhases, phase1_model: str | Path | None
                 ) -> tuple[TrainOptions, TrainOptions]:
    """(phase-1, phase-2) options: joint + GE, then classifiers from phase 1's model."""
    if base.mode != "frozen" or base.hdkd or base.ge is not None or base.init_model \
            or base.isc_transform != "add":
        raise ConfigError("--recipe imta sets the mode, GE, loss and ISC of each phase itself: "
                          "drop --mode, --ge/--no-ge, --hdkd and --isc-transform (the recipe's "
                          "--phase2-isc chooses phase 2's ISC)")
    one = replace(base, mode="joint", ge=True, epochs=phases.epochs1, lr=phases.lr1)
    two = replace(base, mode="classifiers", ge=False, epochs=phases.epochs2, lr=phases.lr2,
                  init="pretrained", isc_transform=phases.isc_transform,
                  init_model=str(phase1_model) if phase1_model is not None else None)
    return one, two


def train_imta(config: RunConfig, out_dir: str | Path, options: TrainOptions = TrainOptions(),
               phases: ImtaPhases = ImtaPhases(), *, resume: bool = False,
               **kwargs: Any) -> TrainResult:
    """Run both phases into ``out_dir/phase1`` and ``out_dir/phase2``; phase 2's result, its
    metrics with ``recipe`` (the phases' settings and phase 1's val / test summaries).

    ``resume``: a finished phase 1 (its model file exists) is not run again; an interrupted phase
    continues from its last epoch. ``kwargs`` go to :func:`~dse.train.full.train_config`.
    """
    out = Path(out_dir)
    c1, c2 = imta_configs(config, phases)
    o1, _ = imta_options(options, phases, None)
    p1_out = out / "phase1"
    if resume and (p1_out / MODEL).is_file():
        p1_model = p1_out / MODEL
        p1_metrics: dict[str, Any] = {}
    else:
        r1 = train_config(c1, p1_out, o1, resume=resume and (p1_out / "last.pt").is_file(),
                          **kwargs)
        p1_model, p1_metrics = r1.model_path, r1.metrics
    _, o2 = imta_options(options, phases, p1_model)
    p2_out = out / "phase2"
    r2 = train_config(c2, p2_out, o2, resume=resume and (p2_out / "last.pt").is_file(), **kwargs)
    r2.metrics["recipe"] = {
        "name": "imta", "phase1": {"out": str(p1_out), "epochs": phases.epochs1,
                                   "lr": p1_metrics.get("options", {}).get("lr", phases.lr1),
                                   "val": p1_metrics.get("val"), "test": p1_metrics.get("test")},
        "phase2": {"out": str(p2_out), "epochs": phases.epochs2, "lr": r2.metrics["options"]["lr"],
                   "alpha": phases.alpha, "temperature": phases.temperature,
                   "isc_transform": phases.isc_transform}}
    (p2_out / METRICS).write_text(json.dumps(to_plain(r2.metrics), indent=2) + "\n")
    return r2
