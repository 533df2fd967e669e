"""SQLite studies commit without an fsync per transaction (WAL + synchronous=NORMAL)."""
from __future__ import annotations

import optuna
import pytest

from dse.search.storage import open_storage, sqlite_url


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask/tell on dse's heartbeat storage
def test_sqlite_storage_is_wal_with_normal_sync_and_keeps_what_it_wrote(tmp_path):
    url = sqlite_url(tmp_path / "s.db")
    storage = open_storage(url)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({})
    trial = study.ask()
    trial.set_user_attr("answer", 42)
    study.tell(trial, 1.0)
    again = optuna.load_study(study_name="s", storage=open_storage(url))
    assert again.trials[0].user_attrs == {"answer": 42} and again.trials[0].value == 1.0


def test_a_sqlite_transaction_holds_the_write_lock_from_its_first_read(tmp_path):
    """Optuna checks a trial's state and then writes it; between processes that is atomic only
    if the read already holds the write lock (two workers took one enqueued trial otherwise)."""
    import sqlite3

    from sqlalchemy import text

    path = tmp_path / "s.db"
    storage = open_storage(sqlite_url(path))
    optuna.create_study(storage=storage, study_name="s")
    other = sqlite3.connect(path, timeout=0.1, isolation_level=None)  # another process
    with storage.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT count(*) FROM trials")).scalar()  # a read, nothing written
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free once the transaction ended
    other.execute("ROLLBACK")
    other.close()
