"""The full-training recipe (``dse train``): options not in a run configuration and their
defaults. The optimizer and the schedule they name are built by :mod:`dse.train.engine`.

A configuration exported by ``dse search`` fixes the structure, the loss (with ISC) and the label
source; how long and how hard to train comes from here (``dse train`` flags). Defaults:

=============  ======================================  ======================================
option         ``frozen`` (exits only)                 ``joint`` (backbone and exits)
=============  ======================================  ======================================
optimizer      the config's (``training.optimizer``)   sgd, momentum 0.9 (MSDNet / IMTA)
lr             the config's (``training.lr``)          0.05
weight decay   0                                       5e-4
GE             off (no backbone gradient)              on
=============  ======================================  ======================================

``classifiers`` (IMTA's phase 2, Li et al. 2019): the backbone's blocks stay frozen, the early
exits *and the final head* train, starting from ``init_model`` (a ``dse train`` model file),
whose frozen copy is the distillation teacher; it takes the joint defaults without GE.

Both: 30 epochs, the config's batch size, cosine schedule, random-shift augmentation, the weights
of the epoch with the best val mean anytime accuracy (``keep="last"``: the last epoch's; see
:mod:`dse.train.run_state`), every row of each split (``max_samples`` keeps a seeded subset,
the rows the feature cache keeps).
Frozen with ``augment=False`` (and no HDKD) trains on the study's feature cache
(:mod:`dse.train.frozen_features`).
Schedules (:func:`dse.train.engine.make_schedule`) are stepped once per optimizer step:
``cosine`` decays the lr to 0 over the run, ``step`` divides it by 10 at 50% and 75% of the
run, ``constant`` keeps it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from dse.errors import ConfigError
from dse.train.engine import (EXIT_WEIGHT_DECAY, NETWORK_SGD_LR, NETWORK_WEIGHT_DECAY,
                              SCHEDULES, SGD_MOMENTUM, check_optimizer)

MODES = ("frozen", "joint", "classifiers")
#: pretrained: the trained backbone, fresh exits; scratch: random backbone (joint mode);
#: proxy: the trained backbone and the exits the search proxy-trained (rebuilt from the config's
#: proxy seed, see dse.api.train)
INITS = ("pretrained", "scratch", "proxy")
#: which weights a run saves: the epoch with the best val mean anytime accuracy, or the last
KEEPS = ("best", "last")
#: ISC forms: dse's parameter-free sum, or IMTA's learned Linear-BN-ReLU transform
ISC_TRANSFORMS = ("add", "learned")
#: epochs of ``dse train`` when --epochs is not given
DEFAULT_EPOCHS = 30
#: joint mode trains the whole network: the engine's whole-network SGD recipe
JOINT_LR = NETWORK_SGD_LR
JOINT_WEIGHT_DECAY = NETWORK_WEIGHT_DECAY


@dataclass(frozen=True)
class TrainOptions:
    """What ``dse train`` was asked for; ``None`` means "the default for the mode"."""

    mode: str = "frozen"
    epochs: int = DEFAULT_EPOCHS
    lr: float | None = None
    batch_size: int | None = None
    optimizer: str | None = None        # sgd | adam
    momentum: float = SGD_MOMENTUM      # sgd only
    weight_decay: float | None = None
    schedule: str = "cosine"
    ge: bool | None = None              # gradient equilibrium (joint only)
    hdkd: bool = False                  # harmonized dense KD loss weights
    hdkd_lr: float = 0.1                # eps: step size of the gamma update
    hdkd_alpha: float = 0.5             # alpha of the balanced validation loss
    hdkd_momentum: float = 0.9          # m of the EMA in the balanced validation loss
    augment: bool = True                # random shifts (and flips for natural images)
    init: str = "pretrained"            # joint: start from the trained backbone or from scratch
    init_model: str | None = None       # a dse train model file whose weights start the run
    isc_transform: str = "add"          # ISC: "add" (parameter-free) or "learned" (IMTA's)
    seed: int | None = None             # None: the config's seed
    max_samples: int | None = None      # seeded cap on each split's rows (None: all)
    feature_cache: bool = True          # frozen, no augmentation: train on the feature cache
    normalize: Any = "dataset"          # dataset | imagenet | none | (mean, std) per channel
    keep: str = "best"                  # save the best-on-val epoch's weights, or the last's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(options: TrainOptions, config) -> TrainOptions:
    """Fill every ``None`` from the mode and the run configuration; check ranges."""
    o = options
    if o.mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {o.mode!r}")
    if o.schedule not in SCHEDULES:
        raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}")
    if o.init not in INITS:
        raise ConfigError(f"--init must be one of {', '.join(INITS)}, got {o.init!r}")
    if o.keep not in KEEPS:
        raise ConfigError(f"--keep must be one of {', '.join(KEEPS)}, got {o.keep!r}")
    joint = o.mode in ("joint", "classifiers")  # the whole-network SGD recipe
    if o.mode == "classifiers" and not o.init_model:
        raise ConfigError("mode classifiers (IMTA phase 2) starts from a trained model: give its "
                          "model file (init_model)")
    if o.init == "proxy" and o.init_model:
        raise ConfigError("--init proxy and an initial model file exclude each other")
    if o.init == "scratch" and o.mode != "joint":
        raise ConfigError("--from-scratch needs --mode joint (frozen mode keeps the trained backbone)")
    if o.isc_transform not in ISC_TRANSFORMS:
        raise ConfigError(f"--isc-transform must be one of {', '.join(ISC_TRANSFORMS)}, "
                          f"got {o.isc_transform!r}")
    if o.isc_transform == "learned" and not config.training.loss.isc:
        raise ConfigError("--isc-transform learned needs a configuration trained with ISC "
                          "(training.loss.isc: true)")
    if o.isc_transform == "learned" and o.hdkd:
        raise ConfigError("--isc-transform learned is not available with --hdkd (HDKD's terms use "
                          "the parameter-free ISC)")
    if o.ge and o.mode != "joint":
        raise ConfigError("--ge needs --mode joint: with a frozen backbone no gradient reaches it")
    t = config.training
    o = replace(
        o,
        optimizer=o.optimizer or ("sgd" if joint else t.optimizer),
        batch_size=o.batch_size or t.batch_size,
        weight_decay=o.weight_decay if o.weight_decay is not None else (
            JOINT_WEIGHT_DECAY if joint else EXIT_WEIGHT_DECAY),
        ge=o.mode == "joint" if o.ge is None else o.ge,
        seed=config.seed if o.seed is None else o.seed,
    )
    if o.lr is None:
        o = replace(o, lr=JOINT_LR if joint and o.optimizer == "sgd" else t.lr)
    check_optimizer(o.optimizer, "--optimizer")
    if o.max_samples is not None and (not isinstance(o.max_samples, int) or o.max_samples < 1):
        raise ConfigError(f"--max-samples must be an integer >= 1, got {o.max_samples!r}")
    for name, value, low in (("epochs", o.epochs, 1), ("batch-size", o.batch_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"--{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("lr", o.lr), ("hdkd-lr", o.hdkd_lr)):
        if not value > 0:
            raise ConfigError(f"--{name} must be > 0, got {value!r}")
    if not 0 <= o.momentum < 1 or o.weight_decay < 0:
        raise ConfigError(f"--momentum must be in [0, 1) and --weight-decay >= 0, got "
                          f"{o.momentum!r} and {o.weight_decay!r}")
    if o.hdkd and o.optimizer != "sgd":
        raise ConfigError("--hdkd's virtual step is an SGD step: use --optimizer sgd with it")
    return o
