"""``dse.api.trial_config``: write any trial's run configuration, front or not (``dse config``).

``dse search`` and ``dse report`` write the configurations of the Pareto front; a dominated or
infeasible trial is still a trained, measured design a user may want to train fully or export.
The file goes to ``reports/<study>/configs/trial_<n>.yaml`` by default (beside the front's, so
``dse train`` puts its run in ``reports/<study>/train/trial_<n>/``) and is recorded there as
*kept* (:func:`dse.written.keep_written`): a later ``dse report`` never deletes it. An existing
file dse did not write is never replaced without ``force``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from dse.design import config_from_section, save_config
from dse.errors import ConfigError
from dse.paths import check_study_name, check_writable_dir
from dse.search.export import CONFIG_PATTERN
from dse.search.schema import TRIAL, front_trials, is_feasible, trial_attrs
from dse.search.storage import open_storage, redact, sqlite_url
from dse.search.study import load_study
from dse.written import keep_written, written_files
from dse.yamlio import Section


def trial_config(study: str, trial: int, *, out: str | Path | None = None,
                 storage: str | None = None, force: bool = False) -> dict[str, Any]:
    """Write trial ``trial`` of ``study`` as a run configuration file (``dse config``).

    Args:
        study: the study name.
        trial: the trial number (any state that stored its configuration: complete trials,
            on the front or not).
        out: the file to write (None: ``reports/<study>/configs/trial_<n>.yaml``).
        storage: Optuna storage URL (None: ``sqlite:///reports/<study>/study.db``).
        force: replace an existing file that dse did not write.

    Returns:
        ``{"study", "trial", "state", "front", "feasible", "config"}`` (the path written) and
        the trial's val metrics (accuracy in percent, latency in ms).

    Raises:
        dse.errors.DseError: no such study or trial, a trial without a stored configuration,
            an existing file dse did not write (without ``force``).
    """
    check_study_name(study)
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise ConfigError(f"--trial must be a trial number >= 0, got {trial!r}")
    study_dir = Path("reports") / study
    s = load_dse_study(study, study_storage(study, storage, study_dir))
    t = _find(s, study, trial)
    a = trial_attrs(t)
    if not isinstance(a["config"], dict):
        why = TRIAL["fail_reason"].get(t)
        raise ConfigError(f"trial {trial} of {study} ({t.state.name}) stored no configuration"
                          + (f": {why}" if why else ""))
    config = config_from_section(Section(a["config"], f"trial {trial}"))
    path = Path(out) if out is not None else study_dir / "configs" / CONFIG_PATTERN.format(number=trial)
    if path.exists() and not force and path.name not in (
            written_files(path.parent) | written_files(path.parent, "kept")):
        raise ConfigError(f"--out {path}: exists and was not written by dse; pass --force to "
                          "replace it, or choose another --out")
    if path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; give a file name")
    check_writable_dir(path.parent, "--out")
    path.parent.mkdir(parents=True, exist_ok=True)
    front = any(f.number == trial for f in front_trials(s))
    feasible = is_feasible(t) if t.values else None
    where = "on the Pareto front" if front else (
        "not on the Pareto front" + ("" if feasible is not False else ", infeasible"))
    save_config(config, str(path), header=_header(study, t, a, where, path))
    keep_written(path.parent, path.name)
    return {"study": study, "trial": trial, "state": t.state.name, "front": front,
            "feasible": feasible, "config": str(path), "val_accuracy": a["val_accuracy"],
            "test_accuracy": a["test_accuracy"], "expected_latency_ms": a["expected_latency_ms"]}


def study_storage(study: str, storage: str | None, study_dir: Path, *,
                  storage_hint: str = "") -> str:
    """The storage URL of ``study``: ``storage``, or ``study_dir/study.db`` (one line,
    ConfigError, when missing; ``storage_hint``: more ways to name the storage)."""
    if storage is not None:
        return storage
    db = study_dir / "study.db"
    if not db.is_file():
        raise ConfigError(f"{db}: no such file; run 'dse search --study {study}' first, or "
                          f"pass --storage URL{storage_hint}")
    return sqlite_url(db)


def load_dse_study(study: str, storage: str) -> Any:
    """The dse study ``study`` in ``storage``; one line (ConfigError) for a damaged database or
    a study dse did not write."""
    from sqlalchemy.exc import SQLAlchemyError
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        s = load_study(open_storage(storage), study)
        attrs = s.user_attrs
    except SQLAlchemyError as exc:  # a damaged database file
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"--storage {redact(storage)}: cannot read the study ({first})") from None
    if "dse_version" not in attrs or "objectives" not in attrs:
        raise ConfigError(f"study {study!r} in {redact(storage)} is not a dse study (it has no "
                          "dse settings); dse reads studies written by dse search")
    return s


def _find(study: Any, name: str, number: int) -> Any:
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.number == number:
            return t
    last = max((t.number for t in trials), default=None)
    held = f"trials 0 to {last}" if last is not None else "no trials"
    raise ConfigError(f"--trial {number}: study {name} has no such trial (it holds {held})")


def _header(study: str, t: Any, a: dict[str, Any], where: str, path: Path) -> str:
    lines = [f"dse config: study {study}, trial {t.number} ({t.state.name}, {where})"]
    if a["val_accuracy"] is not None and a["expected_latency_ms"] is not None:
        lines.append(f"val accuracy {a['val_accuracy']:.2f}%, expected latency "
                     f"{a['expected_latency_ms']:.4g} ms (val)")
    lines.append(f"train it: dse train --config {path}")
    return "\n".join(lines)
