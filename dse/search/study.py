"""The Optuna study: objectives, samplers, creation and resumption, stored settings.

Objectives: maximise val accuracy (%) of the early-exit model and minimise its expected latency
(ms) on the profile's runtime; ``macs`` and ``energy_mj`` may be added. Constraints (latency
budget, accuracy drop) are given to the sampler as constraint values (``Trial.set_constraint`` on
Optuna >= 5, ``constraints_func`` before), so infeasible trials steer the search instead of
being thrown away.

Samplers (``--sampler``): ``tpe`` (the default: multi-objective TPE, multivariate with
``group=True`` over the conditional encoding, plus threshold refinement, see
:mod:`dse.search.refine`), ``nsga2`` (NSGA-II with a small population so it evolves within a few
dozen trials, over the fixed-length encoding its crossover needs, plus refinement), ``random``.
``benchmarks/search_quality.py`` measures every set-up; the default reaches the highest
hypervolume there (numbers in the README).

A study stores its settings in ``user_attrs`` (the storage schema), so re-running the same
command resumes it and ``dse worker --study S --storage URL`` rebuilds everything from them.
"""
from __future__ import annotations

import datetime
import time
import warnings
from typing import Any, Sequence

import optuna

from dse import __version__
from dse.cache import digest, slug
from dse.cost.profiles import profile_registry
from dse.errors import ConfigError
from dse.search.context import StudySettings
from dse.search.schema import DIRECTIONS, STUDY, TRIAL
OBJECTIVE_ALIASES = {"latency": "latency_ms", "energy": "energy_mj", "acc": "accuracy"}
SAMPLERS = ("tpe", "nsga2", "random")
DEFAULT_SAMPLER = STUDY["sampler"].default
#: how each sampler sees the space: "fixed" (every parameter in every trial) or "conditional"
#: (only those a configuration uses); chosen with benchmarks/search_quality.py
ENCODING = {"tpe": "conditional", "nsga2": "fixed", "random": "fixed"}
#: whether trials enqueue threshold variants that extend the front (dse.search.refine)
REFINE = {"tpe": True, "nsga2": True, "random": False}
#: NSGA-II population (Optuna's default of 50 would be random search for a 40-trial study)
NSGA2_POPULATION = 16
#: random trials before TPE models the front
TPE_STARTUP = 10
#: settings that must match when a study is resumed (they change what the values mean)
_PINNED = ("backbone", "dataset", "input_size", "seed", "profile", "runtime",
           "batch", "objectives", "budget_ms", "max_drop", "space")


def parse_objectives(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'macs,energy' -> ('accuracy', 'latency_ms', 'macs', 'energy_mj'); accuracy and latency
    are always the first two objectives."""
    names = text.split(",") if isinstance(text, str) else list(text or [])
    out = ["accuracy", "latency_ms"]
    for raw in names:
        name = OBJECTIVE_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in DIRECTIONS:
            raise ConfigError(f"--objectives: unknown objective {raw.strip()!r}; expected "
                              f"accuracy, latency, macs, energy")
        if name not in out:
            out.append(name)
    return tuple(out)


def default_study_name(dataset: str, backbone: str, profile: str) -> str:
    """``digits-digits-resnet-jetson-nano``: dataset name, backbone, resolved profile name."""
    return slug(f"{dataset.split(':', 1)[0]}-{backbone}-{profile}").lower()


def make_sampler(name: str, seed: int | None, *, population_size: int = NSGA2_POPULATION,
                 n_startup_trials: int = TPE_STARTUP, constrained: bool = False) -> Any:
    use_func = constrained and not hasattr(optuna.trial.Trial, "set_constraint")
    extra = {"constraints_func": constraints_from_attrs} if use_func else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate TPE is marked experimental
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              constant_liar=True, n_startup_trials=n_startup_trials,
                                              **extra)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size, **extra)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def constraints_from_attrs(trial: Any) -> list[float]:
    """Constraint values a trial stored (Optuna < 5 reads them through ``constraints_func``)."""
    return list(TRIAL["constraint"].get(trial))


def study_attrs(ctx: Any, space: Any, target: int) -> dict[str, Any]:
    """A new study's user_attrs (every key is declared in :data:`dse.search.schema.STUDY`)."""
    s = ctx.settings
    return {"dse_version": __version__, **ctx.study_attrs(), "space_file": s.space_file,
            "space": space.to_plain(), "sampler": s.sampler, "backbone_epochs": s.backbone_epochs,
            "feature_dtype": s.feature_dtype, "max_samples": s.max_samples,
            "feature_source": s.feature_source,
            "population_size": NSGA2_POPULATION, "n_startup_trials": TPE_STARTUP,
            "encoding": ENCODING[s.sampler], "refine": REFINE[s.sampler],
            "target_trials": target,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def create_or_resume(storage: Any, name: str, attrs: dict[str, Any], sampler: Any) -> tuple[Any, bool]:
    """(study, resumed): a new study with ``attrs``, or the existing one if its settings match."""
    directions = [DIRECTIONS[o] for o in attrs["objectives"]]
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        try:
            study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                        directions=directions)
        except optuna.exceptions.DuplicatedStudyError:  # a concurrent process created it
            study = _wait_for_attrs(optuna.load_study(study_name=name, storage=storage,
                                                      sampler=sampler), list(attrs))
        else:
            for key, value in attrs.items():
                STUDY[key].set(study, value)
            name_metrics(study, attrs["objectives"])
            return study, False
    else:
        if not study.get_trials(deepcopy=False):  # maybe just created by a concurrent process
            study = _wait_for_attrs(study, list(attrs), timeout_s=10.0)
    check_compatible(name, study.user_attrs, attrs)
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"study {name!r} exists with other objectives; use --study NAME for a "
                          "new study")
    for key in ("target_trials", "sampler", "encoding", "refine"):
        if study.user_attrs.get(key) != attrs[key]:
            STUDY[key].set(study, attrs[key])
    if study.metric_names is None:  # a study made before dse named its metrics
        name_metrics(study, attrs["objectives"])
    return study, True


def name_metrics(study: Any, names: Sequence[str]) -> None:
    """Name the study's objective values (``accuracy``, ``latency``, ...) so optuna-dashboard
    and ``study.trials_dataframe()`` show them instead of "Objective 0/1"
    (:meth:`optuna.Study.set_metric_names`, experimental in Optuna 3.x)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(names))


def _wait_for_attrs(study: Any, keys: list[str], timeout_s: float = 60.0) -> Any:
    """The study once its creator (another process) has stored all its settings."""
    deadline = time.monotonic() + timeout_s
    while not all(k in study.user_attrs for k in keys) and time.monotonic() < deadline:
        time.sleep(0.05)
    return study


def check_compatible(name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse to resume a study whose settings differ (its values would mean something else)."""
    if not old:
        raise ConfigError(f"study {name!r} exists but was not created by dse search (no settings "
                          "stored); use --study NAME for a new study")
    pinned = list(_PINNED)
    if old.get("checkpoint_source") == "checkpoint" or new.get("checkpoint_source") == "checkpoint":
        pinned.append("checkpoint")  # a default backbone's cache path differs between machines
    for key in pinned:
        if key in old and _norm(old[key]) != _norm(new.get(key)):
            shown_old, shown_new = _short(old[key]), _short(new.get(key))
            raise ConfigError(f"study {name!r} exists with {key}={shown_old}, but this run asks for "
                              f"{key}={shown_new}; use --study NAME (or another --out) for a new study")


def check_resumable(storage: Any, name: str, settings: StudySettings, space: Any) -> None:
    """Refuse, before any long work (backbone, feature cache), to resume study ``name`` when a
    setting known without loading anything differs; :func:`create_or_resume` checks the rest.
    Nothing happens when the study does not exist yet."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return
    s = settings
    known = {"backbone": s.backbone, "dataset": s.dataset, "seed": s.seed, "batch": s.batch,
             "objectives": list(s.objectives), "budget_ms": s.budget_ms,
             "max_drop": s.max_drop, "space": space.to_plain()}
    old = study.user_attrs
    if old:
        check_compatible(name, {k: v for k, v in old.items() if k in known}, known)


def _norm(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_study(storage: Any, name: str, sampler: Any = None) -> Any:
    """An existing study; a missing one names the studies the storage holds."""
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise ConfigError(f"--study {name}: no such study in the storage (it holds: "
                          f"{', '.join(names) or 'no studies'})") from None


def settings_from_attrs(attrs: dict[str, Any]) -> StudySettings:
    """The StudySettings a study was created with (``dse worker``, ``dse report``)."""
    missing = [k for k in ("backbone", "dataset", "seed", "profile", "objectives", "space")
               if k not in attrs]
    if missing:
        raise ConfigError(f"the study has no dse settings ({', '.join(missing)} missing); was it "
                          "created by dse search?")
    # A default backbone is found in (or trained deterministically into) this machine's cache;
    # a given checkpoint must be reachable here under the same path.
    get = {key: attr.read(attrs) for key, attr in STUDY.items()}
    given = get["checkpoint_source"] == "checkpoint"
    return StudySettings(
        backbone=get["backbone"], checkpoint=get["checkpoint"] if given else None,
        dataset=get["dataset"], input_size=get["input_size"], seed=int(get["seed"]),
        profile=_profile_ref(attrs), runtime=get["runtime"], batch=int(get["batch"]),
        space_file=get["space_file"], objectives=tuple(get["objectives"]),
        budget_ms=get["budget_ms"], max_drop=get["max_drop"], sampler=get["sampler"],
        backbone_epochs=get["backbone_epochs"], feature_dtype=get["feature_dtype"],
        max_samples=get["max_samples"], feature_source=get["feature_source"])


def _profile_ref(attrs: dict[str, Any]) -> str:
    """The profile by name when this machine ships it, else by the stored path."""
    name = attrs["profile"]
    return name if name in profile_registry() else (STUDY["profile_path"].read(attrs) or name)


def attach_sampler(study: Any, settings: StudySettings, worker_index: int) -> Any:
    """Give ``study`` this process's sampler (seeded by :func:`sampler_seed`)."""
    attrs = study.user_attrs
    seed = sampler_seed(settings.seed, len(study.get_trials(deepcopy=False)), worker_index)
    study.sampler = make_sampler(
        settings.sampler, seed, population_size=int(attrs.get("population_size", NSGA2_POPULATION)),
        n_startup_trials=int(attrs.get("n_startup_trials", TPE_STARTUP)),
        constrained=settings.budget_ms is not None or settings.max_drop is not None)
    return study.sampler


def sampler_seed(seed: int, n_existing: int, worker_index: int) -> int:
    """A sampler seed per (study seed, trials already in the study, worker): a fresh run is
    reproducible, a resumed run or a second worker does not replay the same suggestions."""
    if n_existing == 0 and worker_index == 0:
        return seed
    return int(digest(seed, n_existing, worker_index), 16) % (2 ** 31)
