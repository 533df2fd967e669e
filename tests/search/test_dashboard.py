"""A dse study is a plain Optuna study: ``study.metric_names`` names its objectives (also for a
study made before dse named them, on resume), and optuna-dashboard serves them over its HTTP
API, so its plots read "accuracy" and "latency_ms" instead of "Objective 0/1"."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dse.api import search

DATA = Path(__file__).parent / "data"
NAMES = ["accuracy", "latency_ms"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, deadline: float) -> object:
    """GET ``url`` until the server answers or ``deadline`` (time.monotonic) passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_metric_names_are_set_and_optuna_dashboard_shows_them(tmp_path, digits_checkpoint):
    pytest.importorskip("optuna_dashboard")
    kw = dict(checkpoint=digits_checkpoint, space=str(DATA / "tiny.yaml"), trials=2,
              max_drop=None, report=False, out=tmp_path, threads=1)
    study = search(**kw).study
    assert study.metric_names == NAMES
    # a study from before dse named its metrics gets them on resume
    study._storage.set_study_system_attr(study._study_id, "study:metric_names", None)
    assert study.metric_names is None
    assert search(**kw).study.metric_names == NAMES

    port = free_port()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, optuna_dashboard; "
         "optuna_dashboard.run_server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]))",
         url, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        base = f"http://127.0.0.1:{port}/api/studies"
        studies = get_json(base, deadline)["study_summaries"]
        [entry] = [s for s in studies if s["study_name"] == study.study_name]
        detail = get_json(f"{base}/{entry['study_id']}", deadline)
        assert detail["objective_names"] == NAMES
        assert len(detail["trials"]) >= 2
    finally:
        server.terminate()
        server.wait(timeout=30)
