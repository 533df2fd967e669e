"""Several processes on one study: SIGKILL and resume, two workers, a real PostgreSQL server,
and Optuna's own tools reading the storage."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from dse.cli import cli

DATA = Path(__file__).parent / "data"
STUDY = "digits-digits-resnet-jetson-nano"
DSE = [sys.executable, "-c", "from dse.cli import main; main()"]
pytestmark = pytest.mark.slow


def load(url: str, name: str = STUDY):
    """Plain Optuna on the storage (SQLAlchemy 2.1 needs the psycopg2 driver named)."""
    return optuna.load_study(study_name=name, storage=url.replace("postgresql://",
                                                                  "postgresql+psycopg2://"))


def states(url: str, name: str = STUDY) -> collections.Counter:
    try:
        study = load(url, name)
    except Exception:  # noqa: BLE001 - not created yet
        return collections.Counter()
    return collections.Counter(t.state.name for t in study.trials)


def search(checkpoint: str, out: Path, trials: int, *extra: str, space: str = "slow.yaml") -> list[str]:
    return ["search", "--checkpoint", checkpoint, "--space", str(DATA / space), "--trials",
            str(trials), "--out", str(out), "--no-report", "--profile", "jetson", "--heartbeat",
            "1", "--max-drop", "none", *extra]


def start(args: list[str], log_path: Path, env: dict[str, str] | None = None,
          command: list[str] = DSE) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen(command + args, stdout=log, stderr=log, start_new_session=True,
                            env={**os.environ, **(env or {})})
    log.close()
    return proc


#: what a trial of slow.yaml suggests before its branches train
SLOW_PARAMS = {"exits", "placement", "threshold_maxprob", "lr"}


def dse_with_hook(module: str) -> list[str]:
    """`dse` with the test hook ``data/<module>.py`` imported first."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(DATA)!r}); "
            f"import {module}; from dse.cli import main; main()"]


#: `dse` with a hook that holds a trial once the study has enough COMPLETE ones (data/hold_trial.py)
HOLDING_DSE = dse_with_hook("hold_trial")


def start_holding(args: list[str], log_path: Path, after: int, held: Path) -> subprocess.Popen:
    """A search that holds one trial, RUNNING with all its parameters, once ``after`` trials
    are COMPLETE (then waits for a signal)."""
    held.unlink(missing_ok=True)
    return start(args, log_path, {"DSE_TEST_HOLD_AFTER": str(after), "DSE_TEST_HELD": str(held)},
                 HOLDING_DSE)


def wait_until_held(url: str, proc: subprocess.Popen, log_path: Path, held: Path,
                    complete: int) -> int:
    """Until the holding process reports its held trial; returns that trial's number."""
    deadline = time.time() + 240
    while not held.exists():
        assert proc.poll() is None, log_path.read_text()
        assert time.time() < deadline, "the run never got going"
        time.sleep(0.05)
    number = int(held.read_text())
    trial = load(url).trials[number]
    s = states(url)
    assert trial.state.name == "RUNNING" and set(trial.params) == SLOW_PARAMS
    assert s["COMPLETE"] >= complete and s["RUNNING"] == 1, s
    return number


def test_resume_after_ctrl_c_and_sigkill_reaches_exactly_n(tmp_path, checkpoint):
    out = tmp_path / "killed"
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    args = search(checkpoint, out, 6)
    held = tmp_path / "held"

    first = start_holding(args, tmp_path / "first.log", 1, held)  # Ctrl-C: the group gets SIGINT
    interrupted = wait_until_held(url, first, tmp_path / "first.log", held, 1)
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=60) == 130
    log = (tmp_path / "first.log").read_text()
    assert "interrupted:" in log and "run the same command again" in log
    assert (out / "trials.csv").is_file()
    trial = load(url).trials[interrupted]
    assert trial.state.name == "FAIL" and trial.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"

    second = start_holding(args, tmp_path / "second.log", 3, held)  # SIGKILL: no cleanup
    killed = wait_until_held(url, second, tmp_path / "second.log", held, 3)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    assert load(url).trials[killed].state.name == "RUNNING"  # the kill left it behind

    result = CliRunner().invoke(cli, args)  # the same command again
    assert result.exit_code == 0, result.output
    study = load(url)
    s = collections.Counter(t.state.name for t in study.trials)
    assert s["COMPLETE"] == 6 and s["RUNNING"] == 0
    assert study.trials[killed].state.name == "FAIL"
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert [t.state.name for t in retries] == ["COMPLETE"]
    assert retries[0].params == study.trials[killed].params
    assert "worker stopped sending heartbeats" in (out / "trials.csv").read_text()


def test_three_searches_started_together_on_a_new_study_share_it(tmp_path, checkpoint):
    out = tmp_path / "three"
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    args = search(checkpoint, out, 6)
    procs = [start(args, tmp_path / f"search{k}.log") for k in range(3)]
    for k, proc in enumerate(procs):
        assert proc.wait(timeout=400) == 0, (tmp_path / f"search{k}.log").read_text()
    study = load(url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    s = collections.Counter(t.state.name for t in study.trials)
    assert len(done) == 6 and s["RUNNING"] == 0, s
    distinct = {tuple(sorted(t.params.items())) for t in done}
    assert len(distinct) == 6, [t.params for t in done]  # no two processes replayed a trial


#: `dse` whose workers meet inside their first trial before finishing it (data/meet_workers.py)
MEETING_DSE = dse_with_hook("meet_workers")


def run_two_workers(url: str, target: int, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """Two ``dse worker`` processes on one study until it has ``target`` COMPLETE trials; each
    finishes its first trial only once the other is inside one (a state the test controls, not
    a race with the first worker's start-up)."""
    procs = []
    env = {**os.environ, "DSE_TEST_MEET": str(tmp_path / "met"), "DSE_TEST_MEET_COUNT": "2"}
    for k in (1, 2):
        log = open(tmp_path / f"worker{k}.log", "w")
        procs.append((subprocess.Popen(MEETING_DSE + ["worker", "--study", STUDY, "--storage",
                                                      url, "--trials", str(target),
                                                      "--heartbeat", "1", "--worker-index",
                                                      str(k)],
                                       stdout=log, stderr=log, env=env), log))
    for p, log in procs:
        assert p.wait(timeout=300) == 0, (tmp_path / f"worker{procs.index((p, log)) + 1}.log").read_text()
        log.close()


def check_shared(url: str, target: int) -> None:
    study = load(url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    s = collections.Counter(t.state.name for t in study.trials)
    assert len(done) == target and s["RUNNING"] == 0
    assert len({t.number for t in done}) == target
    by_worker = collections.Counter(t.user_attrs["worker"] for t in done[1:])
    assert len(by_worker) == 2, by_worker  # both workers ran trials


def test_two_workers_share_one_sqlite_study(tmp_path, checkpoint):
    out = tmp_path / "shared"
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    result = CliRunner().invoke(cli, search(checkpoint, out, 1))
    assert result.exit_code == 0, result.output
    run_two_workers(url, 8, tmp_path)
    check_shared(url, 8)


def test_optuna_tools_open_the_study(tmp_path, checkpoint):
    out = tmp_path / "tools"
    result = CliRunner().invoke(cli, search(checkpoint, out, 2, space="tiny.yaml"))
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    optuna_cli = Path(sys.executable).with_name("optuna")
    listed = subprocess.run([str(optuna_cli), "studies", "--storage", url, "-f", "json"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert STUDY in listed.stdout
    code = ("import optuna; s = optuna.load_study(study_name=%r, storage=%r); "
            "print(len(s.best_trials), s.trials[0].user_attrs['val_accuracy'])" % (STUDY, url))
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr  # no dse import needed to read it


# ---------------------------------------------------------------- PostgreSQL

def _pg_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(dirs[-1]).parent if dirs else None


@pytest.fixture
def postgres_url(tmp_path):
    import pwd
    import shutil
    import socket
    import tempfile

    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's "
                    "'postgresql' package to run this test")
    prefix: list[str] = []
    datadir = Path(tempfile.mkdtemp(prefix="dse-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(datadir, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run(prefix + list(cmd), check=True, capture_output=True,  # noqa: E731
                                      text=True, timeout=120)
    run(str(bindir / "initdb"), "-D", str(datadir / "db"), "-U", "postgres", "--auth=trust",
        "--no-sync", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(datadir / "db"), "-w", "-l", str(datadir / "log"),
        "-o", f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -F", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(datadir / "db"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.mark.postgres
def test_two_workers_share_a_postgresql_study(tmp_path, checkpoint, postgres_url):
    result = CliRunner().invoke(cli, search(checkpoint, tmp_path / "pg", 1, "--storage", postgres_url))
    assert result.exit_code == 0, result.output
    run_two_workers(postgres_url, 8, tmp_path)
    check_shared(postgres_url, 8)
    # and `dse search --jobs 2` on the same storage tops it up with a local worker process
    result = CliRunner().invoke(cli, search(checkpoint, tmp_path / "pg", 11, "--storage",
                                            postgres_url, "--jobs", "2", "--json"))
    assert result.exit_code == 0, result.output
    s = states(postgres_url)
    assert s["COMPLETE"] == 11 and s["RUNNING"] == 0
