"""Optuna storage for studies: embedded SQLite by default, any Optuna RDB URL for many machines.

Every worker process opens the storage with a heartbeat: while a trial runs, a thread records a
heartbeat every ``heartbeat_s`` seconds; a RUNNING trial whose heartbeat is older than
``grace_s`` belongs to a dead worker (SIGKILL, power loss, a preempted machine). Optuna marks it
FAIL and :func:`retry_stale_trial` re-enqueues its parameters as a WAITING trial, which the next
worker to ask for a trial runs first: never lost, never counted twice (only COMPLETE trials count).

SQLite is opened in WAL mode (``synchronous=NORMAL``: no fsync per transaction) with a long
busy timeout and every transaction begun ``IMMEDIATE`` (a check and the write that follows it
are atomic between processes), so several local worker processes share one file; the file stays a plain Optuna
database (``optuna.load_study``, ``optuna-dashboard``).
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event

from dse.cache import digest
from dse.errors import ConfigError

DEFAULT_HEARTBEAT_S = 5
#: a trial is stale after this many missed heartbeats
GRACE_BEATS = 3
#: how often a stale trial is re-enqueued before it is left failed
MAX_RETRY = 3
SQLITE_TIMEOUT_S = 120
#: how often opening a new database is retried while another process creates its tables
SCHEMA_RETRIES = 20


def sqlite_url(path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str, *, heartbeat_s: int = DEFAULT_HEARTBEAT_S,
                 grace_s: int | None = None) -> Any:
    """An ``optuna.storages.RDBStorage`` with heartbeat and stale-trial retry."""
    if not isinstance(heartbeat_s, int) or heartbeat_s < 1:
        raise ConfigError(f"--heartbeat must be an integer >= 1 second, got {heartbeat_s!r}")
    engine_kwargs: dict[str, Any] = {}
    is_sqlite = url.startswith("sqlite:")
    if is_sqlite:
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"--storage {url}: cannot create its folder ({exc.strerror})") from None
    elif "://" not in url:
        raise ConfigError(f"--storage {url!r} is not a storage URL (e.g. sqlite:///study.db or "
                          "postgresql://user:password@host/db)")
    url = _with_driver(url)
    kwargs = dict(heartbeat_interval=heartbeat_s, grace_period=grace_s or GRACE_BEATS * heartbeat_s)
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    callback = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params \
        else "failed_trial_callback"
    kwargs[callback] = retry_stale_trial
    for attempt in range(SCHEMA_RETRIES + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat arguments are marked experimental
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            break
        except Exception as exc:  # noqa: BLE001 - drivers raise many types for a bad URL or server
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt < SCHEMA_RETRIES and _lost_schema_race(first):
                time.sleep(0.05 * (attempt + 1))  # another process is creating the tables
                continue
            raise ConfigError(f"--storage {redact(url)}: cannot open the storage ({first})") from None
    if is_sqlite:
        _enable_wal(storage)
    return storage


def _lost_schema_race(message: str) -> bool:
    """Two processes that open a new database together both create Optuna's tables; the
    slower one fails with one of these, and succeeds when it tries again."""
    return any(text in message for text in _SCHEMA_RACE)


_SCHEMA_RACE = ("UNIQUE constraint failed", "already exists", "duplicate key value")


def process_index() -> int:
    """A number that tells this process apart from every other worker on the study, on any
    machine (host name, process id and start time), for its sampler seed."""

    return 1 + int(digest(socket.gethostname(), os.getpid(), time.time_ns()), 16) % (2 ** 31 - 1)


def _with_driver(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg2://`` when only psycopg2 is installed (SQLAlchemy
    2.1 defaults to psycopg 3)."""
    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _enable_wal(storage: Any) -> None:
    """WAL journal: readers do not block the writer (persistent in the database file); and
    ``synchronous=NORMAL`` on every connection of this process.

    A trial stores its results as some thirty user attributes, one transaction each; with the
    default ``synchronous=FULL`` every one waits for an fsync (a tenth of a second per trial
    on a busy disk). With NORMAL in WAL mode SQLite syncs only at checkpoints: "WAL journal
    mode is safe from corruption with NORMAL sync mode ... A transaction committed in WAL mode
    with NORMAL might roll back following a power loss or system crash. Transactions are
    durable across application crashes regardless of the synchronous setting" (SQLite's
    ``PRAGMA synchronous``, as quoted by Android's ``SQLiteDatabase.SYNC_MODE_NORMAL``). A
    trial lost that way is run again, as after a dead worker (only COMPLETE trials count).
    """
    try:
        with storage.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            wal = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() == "wal"
    except Exception:  # noqa: BLE001 - e.g. a read-only file system; the default journal works
        return
    if wal:
        event.listen(storage.engine, "connect", _normal_sync)
        event.listen(storage.engine, "begin", _begin_immediate)
        storage.engine.dispose()  # pooled connections reopen with the settings


def _normal_sync(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
    dbapi_connection.isolation_level = None  # no implicit BEGIN: _begin_immediate emits it


def _begin_immediate(conn: Any) -> None:
    """Start every transaction with ``BEGIN IMMEDIATE`` (the write lock, waited for up to the
    busy timeout), so that Optuna's read-check-write steps are atomic between processes.

    Python's sqlite3 driver begins a transaction only before a write, so the read in Optuna's
    "set RUNNING if still WAITING" ran outside it and SQLite, which ignores ``SELECT ... FOR
    UPDATE``, let two workers take the same enqueued trial: the second then failed with
    "Cannot tell a COMPLETE trial" (a CI run of three searches started together; Optuna issue
    #4621). Our choice: transactions serialise across processes; a dse trial writes a few dozen
    short transactions in seconds of training, so the waits are short. The recipe is
    SQLAlchemy's for pysqlite ("Serializable isolation / Savepoints / Transactional DDL").
    """
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def retry_stale_trial(study: Any, trial: Any) -> None:
    """Re-enqueue a trial whose worker died (up to MAX_RETRY times per original trial).

    The same bookkeeping as Optuna's ``RetryHeartbeatStaleTrialCallback`` (system attrs
    ``failed_trial`` and ``retry_history``), but the new trial starts without the dead one's
    user attrs, which may be half written.
    """
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    if len(history) > MAX_RETRY:
        return
    system_attrs = {k: v for k, v in trial.system_attrs.items() if not k.startswith("constraints")}
    system_attrs.update({"failed_trial": history[0], "retry_history": history})
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params,
        distributions=trial.distributions, user_attrs={"retry_of": trial.number},
        system_attrs=system_attrs))
