"""``dse.api.train`` and ``dse.api.finetune``: train a configuration; choose the exits to
re-train under a deployment shift."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from dse.api._checks import at_least, one_of, positive
from dse.api._config import ConfigLike, code_guard, resolve_config
from dse.device import select_device, set_threads
from dse.errors import ConfigError
from dse.finetune.context import context_for, train_original
from dse.finetune.selective import SCORE_SPLITS, SELECTIONS, FinetuneResult, finetune_config
from dse.finetune.shifts import check_shift
from dse.paths import check_writable_dir
from dse.train.full import TrainResult, train_config
from dse.train.options import INITS, KEEPS, TrainOptions
from dse.train.retune import Objective
from dse.train.streamed import refuse_streamed, streamed_study
from dse.train.recipes import ImtaPhases, train_imta

Log = Callable[[str], None]


def default_train_dir(config_path: str | Path) -> Path:
    """``reports/<study>/train/<trial>/`` for ``reports/<study>/configs/<trial>.yaml``, else
    ``<config folder>/<config name>-train/``."""
    p = Path(config_path)
    if p.parent.name == "configs":
        return p.parent.parent / "train" / p.stem
    return p.parent / f"{p.stem}-train"


def train(config: ConfigLike, *, epochs: int = 30, dataset: str | None = None,
          checkpoint: str | None = None, out: str | Path | None = None, mode: str = "frozen",
          resume: bool = False, lr: float | None = None, batch_size: int | None = None,
          optimizer: str | None = None, momentum: float = 0.9, weight_decay: float | None = None,
          schedule: str = "cosine", ge: bool | None = None, hdkd: bool = False,
          hdkd_lr: float = 0.1, augment: bool = True, from_scratch: bool = False,
          init: str = "pretrained",
          seed: int | None = None, allow_code: bool = False, device: str = "auto",
          threads: int | None = None, recipe: str = "plain", phase2_epochs: int | None = None,
          phase2_lr: float | None = None, phase2_isc: str = "learned",
          isc_transform: str = "add", max_samples: int | None = None,
          normalize: Any = "dataset", feature_cache: bool = True, keep: str = "best",
          retune: bool | Objective = True, log: Log | None = None,
          progress: bool | None = False) -> TrainResult:
    """Train a run configuration, exits only or jointly with the backbone (``dse train``), and
    save the model.

    Args:
        config: a run configuration: a YAML path (``reports/<study>/configs/trial_N.yaml``) or a
            :class:`dse.design.RunConfig`.
        epochs: training epochs.
        dataset: train on this dataset (``NAME`` or ``NAME:PATH``) instead of the config's.
        checkpoint: backbone weights (None: the config's, else the cached trained backbone).
        out: output folder (None: ``reports/<study>/train/<trial>/`` for a config in
            ``reports/<study>/configs/``, else ``<config name>-train/`` beside it; required when
            ``config`` is a RunConfig).
        mode: ``frozen`` trains the exits on the fixed backbone; ``joint`` trains everything.
        resume: continue the interrupted run in ``out`` from its last epoch.
        lr: peak learning rate (None: 0.05 joint with sgd, else the config's).
        batch_size: batch size (None: the config's).
        optimizer: ``sgd`` or ``adam`` (None: sgd with momentum for joint, the config's for
            frozen).
        momentum: SGD momentum, in [0, 1).
        weight_decay: None: 5e-4 joint, 0 frozen.
        schedule: ``cosine`` to 0, ``step`` (/10 at 50% and 75% of the steps) or ``constant``.
        ge: gradient equilibrium (Li et al. 2019); None: on for joint.
        hdkd: learn the CE / distillation loss weights on val (harmonized dense KD).
        hdkd_lr: step size of HDKD's loss-weight update.
        augment: random shifts (and flips for natural images).
        from_scratch: joint mode: start from random backbone weights (``init="scratch"``).
        init: ``pretrained`` (the trained backbone, fresh exits), ``scratch`` (as
            ``from_scratch``) or ``proxy``: the trained backbone and the exits the search
            proxy-trained, rebuilt exactly from the config's recorded proxy seed (the search
            keeps no weights; its proxy training is deterministic), so training continues from
            what the search measured (refused for a study that streamed its features).
        seed: random seed (None: the config's).
        allow_code: let the config file's backbone name Python code (``module:factory``).
        device: where torch runs: ``auto``, ``cpu`` or ``cuda``.
        threads: torch CPU threads (None: the CPUs this process may use).
        recipe: ``plain``, or ``imta``: IMTA's two phases (Li et al. 2019), joint with GE and CE
            for ``epochs`` at ``lr``, then the classifiers on the frozen backbone with ISC and
            one-for-all KD for ``phase2_epochs`` at ``phase2_lr``; into ``out/phase1`` and
            ``out/phase2``.
        phase2_epochs: ``recipe="imta"``: phase-2 epochs (None: ``epochs``).
        phase2_lr: ``recipe="imta"``: phase-2 peak learning rate (None: the joint default).
        phase2_isc: ``recipe="imta"``: phase 2's ISC, ``learned`` (IMTA's transform) or ``add``.
        isc_transform: ISC of a config trained with it: ``add`` (z_i + stopgrad(z_{i-1})) or
            ``learned`` (IMTA's Linear-BN-ReLU transform of the previous logits).
        max_samples: keep a seeded random subset of at most this many rows of each split.
        normalize: input normalisation: ``dataset``, ``imagenet``, ``none`` or (mean, std) per
            channel (:func:`dse.data.parse_normalize`).
        feature_cache: frozen without augmentation: train the exits on the study's feature cache
            instead of running the backbone every step (a study that streamed its features has
            none: the backbone then runs per batch, :mod:`dse.train.streamed`).
        keep: ``best`` saves the weights of the epoch with the best val mean anytime accuracy,
            ``last`` those of the last epoch.
        retune: after training, re-tune the thresholds on val for the search's objective (the
            highest val accuracy within the latency the search predicted for this config,
            :mod:`dse.train.retune`); kept as configured, with a note, when the config does not
            come from a search. False keeps them (``--keep-thresholds``); a
            :class:`dse.train.retune.Objective` (``make_objective(budget_ms=...)`` or
            ``make_objective(max_drop=...)``) re-tunes for that objective instead.
        log: receives notes and one line per epoch (None: quiet).
        progress: show a progress bar on stderr (None: only on a terminal).

    Returns:
        :class:`dse.train.full.TrainResult`: ``out_dir``, ``model_path``, ``metrics`` (the
        ``metrics.json`` dict: ``thresholds`` holds the thresholds and the val / test sections
        before and after re-tuning, ``kept_epoch`` the epoch saved) and the trained ``model``.

    Raises:
        dse.errors.DseError: a bad file, name or value (never SystemExit).
    """
    at_least("epochs", epochs, 1)
    at_least("batch_size", batch_size, 1)
    at_least("threads", threads, 1)
    positive("lr", lr)
    positive("hdkd_lr", hdkd_lr)
    positive("weight_decay", weight_decay, allow_zero=True)
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
    one_of("optimizer", optimizer, ("sgd", "adam"))
    one_of("recipe", recipe, ("plain", "imta"))
    one_of("init", init, INITS)
    one_of("keep", keep, KEEPS)
    goal = _objective(retune)
    if init == "proxy" and recipe == "imta":
        raise ConfigError("--init proxy starts a plain run; IMTA's recipe starts its own phases")
    one_of("phase2_isc", phase2_isc, ("learned", "add"))
    one_of("isc_transform", isc_transform, ("add", "learned"))
    at_least("phase2_epochs", phase2_epochs, 1)
    at_least("max_samples", max_samples, 1)
    positive("phase2_lr", phase2_lr)
    cfg, source = resolve_config(config, allow_code)
    if out is None and source is None:
        raise ConfigError("out is required when config is a RunConfig (there is no config file "
                          "to put the run beside)")
    if init == "proxy":
        refuse_streamed(cfg, "--init proxy (rebuilding the search's exits)", "use --init "
                        "pretrained, or search with --max-samples N to cache a seeded subset")
    if feature_cache and mode == "frozen" and streamed_study(cfg):
        feature_cache = False  # the search found the cache too large: no cache here either
        if log:
            log("the study streamed its features: frozen training runs the backbone per batch")
    set_threads(threads)
    opts = TrainOptions(mode=mode, epochs=epochs, lr=lr, batch_size=batch_size,
                        optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                        schedule=schedule, ge=ge, hdkd=hdkd, hdkd_lr=hdkd_lr, augment=augment,
                        init="scratch" if from_scratch else init, seed=seed,
                        max_samples=max_samples, feature_cache=feature_cache,
                        normalize=normalize, isc_transform=isc_transform, keep=keep)
    out_dir = check_writable_dir(Path(out) if out is not None else default_train_dir(source),
                                 "--out")
    run = dict(dataset=dataset, checkpoint=checkpoint, resume=resume,
               device=select_device(device), progress=progress, log=log,
               retune=goal)
    with code_guard(source, allow_code):
        if recipe == "imta":
            if mode != "frozen":
                raise ConfigError("--recipe imta sets each phase's mode itself: drop --mode")
            phases = ImtaPhases(epochs1=epochs, epochs2=phase2_epochs or epochs, lr1=lr,
                                lr2=phase2_lr, isc_transform=phase2_isc)
            return train_imta(cfg, out_dir, replace(opts, lr=None, epochs=epochs), phases, **run)
        if phase2_epochs is not None or phase2_lr is not None or phase2_isc != "learned":
            raise ConfigError("--phase2-epochs, --phase2-lr and --phase2-isc need --recipe imta")
        exits = _proxy_exits(cfg, run["device"], log) if init == "proxy" else None
        return train_config(cfg, out_dir, opts, init_exits=exits, **run)


def _objective(retune: Any) -> Objective | None:
    if isinstance(retune, Objective):
        return retune
    if isinstance(retune, bool):
        return Objective() if retune else None
    raise ConfigError(f"retune must be True, False or a dse.train.retune.Objective, got {retune!r}")


def _proxy_exits(config: Any, device: Any, log: Log | None) -> list:
    """The early exits as the search trained them (:func:`dse.finetune.context.train_original`)."""
    if log:
        log("starting from the search's proxy-trained exits")
    original = train_original(config, context_for(config, device, log), log=log)
    return list(original.classifiers[:-1])


def finetune(config: ConfigLike, *, shift: str, steps: int | None = None,
             full_steps: int | None = None, lr: float | None = None,
             selection: str = SELECTIONS[0], score_on: str = "train+val",
             allow_code: bool = False, device: str = "auto", threads: int | None = None,
             log: Log | None = None) -> FinetuneResult:
    """Choose which exits to re-train when the data drifts, and compare with re-training all
    (``dse finetune``): selective fine-tuning of the exits' classifier ensemble (Hirose et al.,
    IEEE Access 2020).

    Args:
        config: a run configuration: a YAML path or a :class:`dse.design.RunConfig`.
        shift: deployment shift applied to the training data (fine-tuning) and test data
            (a name of :data:`dse.finetune.shifts.SHIFTS`).
        steps: probe steps per exit before the subset is chosen (None: at least 30 and 25 %
            of the schedule).
        full_steps: whole fine-tuning schedule (None: the configuration's training steps).
        lr: fine-tuning learning rate (None: the configuration's).
        selection: ``budget`` (default) finishes the best-probed subset whose training step
            costs at most 0.8 of every exit's; ``one-se`` the cheapest within one paired
            standard error of the best probed score; ``best`` the highest score (the paper's
            rule). Each falls back to every exit, with ``warning`` set, when the probe cannot
            separate the subsets (:mod:`dse.finetune.decide`).
        score_on: shifted splits the probed subsets are scored on: ``train+val`` or ``val``.
        allow_code: let the config file's backbone name Python code (``module:factory``).
        device: where torch runs: ``auto``, ``cpu`` or ``cuda``.
        threads: torch CPU threads (None: the CPUs this process may use).
        log: receives progress notes (None: quiet).

    Returns:
        :class:`dse.finetune.selective.FinetuneResult` (``to_dict()`` is ``dse finetune --json``;
        accuracy in percent).

    Raises:
        dse.errors.DseError: a bad file, name or value (never SystemExit).
    """
    at_least("steps", steps, 1)
    at_least("full_steps", full_steps, 1)
    at_least("threads", threads, 1)
    positive("lr", lr)
    one_of("selection", selection, SELECTIONS)
    one_of("score_on", score_on, list(SCORE_SPLITS))
    shift = check_shift(shift)
    cfg, source = resolve_config(config, allow_code)
    set_threads(threads)
    torch_device = select_device(device)
    with code_guard(source, allow_code):
        return finetune_config(cfg, shift, probe_steps=steps, steps=full_steps, lr=lr,
                               selection=selection, score_on=score_on, device=torch_device,
                               log=log)
