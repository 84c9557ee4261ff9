"""Parallel sweeps: local workers on a journal file, and two processes on PostgreSQL + a real mlflow server."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import optuna
import psycopg
import pytest
from optuna.trial import TrialState

from pipeline import cli
from pipeline.processes import mlflow_server
from pipeline.study import is_surplus, optuna_storage

from conftest import ROOT, write_sweep

pytestmark = pytest.mark.slow


def assert_one_run_per_trial(storage: str, tracking_uri: str, n_trials: int) -> None:
    """Every trial exactly once in Optuna and once in MLflow, all under the study's one parent run."""
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(storage))
    # Workers asking at once can overshoot the budget by one: that trial is refused before it trains or logs.
    trials = [t for t in study.trials if not is_surplus(t)]
    assert len(trials) == n_trials and all(t.state == TrialState.COMPLETE for t in trials)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("fashion-mnist-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
    assert sorted(int(r.data.tags["sweep.trial_number"]) for r in children) == [t.number for t in trials]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in children}
    assert all(r.info.status == "FINISHED" for r in children)


def test_two_local_workers_share_the_default_stores(tmp_path, data_dir, monkeypatch):
    """No --storage and no --tracking-uri: the embedded defaults under ./mlruns take several workers."""
    monkeypatch.chdir(tmp_path)
    storage = f"journal:///{tmp_path}/mlruns/optuna.journal"
    # Trials of a few seconds each, so that both workers are up before the study runs out of trials.
    # Each worker process runs 2 trials, then exits and is replaced by a fresh one.
    path = write_sweep(tmp_path, study__n_trials=5, data__subset=2000, data__test_subset=200,
                       data__data_dir=str(data_dir), search_space__epochs=4, study__trials_per_process=2)
    assert cli.main(["run", str(path), "--workers", "2", "--no-progress"]) == 0
    assert_one_run_per_trial(storage, f"sqlite:///{tmp_path}/mlruns/mlflow.db", 5)
    trials = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(storage)).trials
    per_pid = collections.Counter(t.user_attrs["pid"] for t in trials)
    assert len(per_pid) >= 3 and max(per_pid.values()) <= 2, f"workers replaced after 2 trials: {per_pid}"


def _worker_children() -> set[int]:
    """This process's spawned worker processes, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
    return found


@pytest.mark.parametrize("n_trials", [4, 2])
def test_a_spent_worker_s_successor_loads_during_its_last_trial(tmp_path, data_dir, stores, n_trials):
    """One worker, 2 trials per process: the next worker is already up while the last trial trains, and
    takes over (4 trials: 2 processes ran them); when the study ends with that trial (2 trials), the
    successor is sent home and nothing is left running."""
    path = write_sweep(tmp_path, study__n_trials=n_trials, data__subset=2000, data__test_subset=200,
                       data__data_dir=str(data_dir), search_space__epochs=3, study__trials_per_process=2,
                       study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"])
    seen_together, done = [], threading.Event()

    def watch():
        while not done.wait(0.05):
            seen_together.append(len(_worker_children()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert cli.main(["run", str(path), "--no-progress"]) == 0
    finally:
        done.set()
        watcher.join()
    assert max(seen_together) == 2, "the successor started before its predecessor ended"
    assert not _worker_children(), "no worker outlives the command"
    assert_one_run_per_trial(stores["storage"], stores["tracking_uri"], n_trials)
    trials = optuna.load_study(study_name="fashion-mnist-smoke", storage=stores["storage"]).trials
    assert len({t.user_attrs["pid"] for t in trials}) == n_trials // 2


def test_workers_refuse_a_shared_sqlite_file(tmp_path, data_dir, stores, capsys):
    path = write_sweep(tmp_path, data__data_dir=str(data_dir), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"])
    assert cli.main(["run", str(path), "--workers", "2"]) == 2
    assert "needs a study storage several processes can share, not a SQLite file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"], "nothing written, nothing started"


@pytest.fixture
def tracking_server(postgres_databases, tmp_path):
    """A real mlflow server whose backend store is PostgreSQL, artifacts in a temporary folder."""
    mlflow.MlflowClient(postgres_databases[1]).search_experiments()  # schema first: the server's processes race
    with mlflow_server(postgres_databases[1], "--artifacts-destination", str(tmp_path / "artifacts"),
                       "--workers", "2") as uri:
        yield uri


def test_two_machines_join_one_postgres_study_and_one_mlflow_server(tmp_path, data_dir, postgres_databases,
                                                                    tracking_server):
    storage = postgres_databases[0]
    path = write_sweep(tmp_path, study__n_trials=4, data__subset=600, data__test_subset=200,
                       data__data_dir=str(data_dir))
    command = [sys.executable, "-m", "pipeline.cli", "run", str(path), "--storage", storage,
               "--tracking-uri", tracking_server, "--no-progress"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    machines = [subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ran = []
    for machine in machines:
        out, err = machine.communicate(timeout=600)
        assert machine.returncode == 0, err[-3000:]
        assert "View run" not in out, "MLflow's run links stay out of the trial lines"
        ran.append(int(re.search(r"4 finished trials \((\d) run now\)", out).group(1)))
    assert sum(ran) == 4, f"each machine counts the trials it ran, not the study's: {ran}"
    assert_one_run_per_trial(storage, tracking_server, 4)


def with_password(url: str) -> str:
    """The test server's URL with a password added (trust authentication ignores it)."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:SECRET@{host}"


def test_a_trial_whose_machine_died_as_the_study_s_last_is_run_again_on_postgres(tmp_path, data_dir,
                                                                                    postgres_databases, capsys):
    """Another machine died in the study's last trial: its heartbeat stopped. A rerun fails that trial
    before it decides what is left to run, and completes the study (it once said "nothing to do" for ever).
    The URL's password is never printed."""
    storage = postgres_databases[0]
    path = write_sweep(tmp_path, study__n_trials=1, data__subset=600, data__test_subset=200,
                       data__data_dir=str(data_dir), study__storage=with_password(storage),
                       tracking__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(storage))
    dead = study._storage.create_new_trial(study._study_id)  # the other machine's trial, RUNNING
    study._storage.set_trial_user_attr(dead, "host", "another-machine")
    study._storage.set_trial_user_attr(dead, "pid", 4242)
    study._storage.record_heartbeat(dead)
    with psycopg.connect(storage, autocommit=True) as database:
        database.execute("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 hour' WHERE trial_id = %s",
                         (dead,))
    capsys.readouterr()
    assert cli.main(["run", str(path), "--no-progress", "--n-trials", "2"]) == 0
    out, err = capsys.readouterr()
    assert "2 finished trials (1 run now)" in out, out
    assert "trial 1 of host another-machine was failed: its process stopped sending heartbeats" in out, out
    assert "SECRET" not in out + err and "postgresql://127.0.0.1:5432/" in out
    trials = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(storage)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
