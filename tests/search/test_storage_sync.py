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
