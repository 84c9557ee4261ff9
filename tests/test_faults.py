"""Faults: diverging and failing trials, too many failures, an unreachable tracking server, SIGKILL, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import psycopg
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from pipeline import cli, processes
from pipeline import stores as store_uris
from pipeline.processes import free_port, start_group, stop_group, wait_for_http
from pipeline.study import optuna_storage

from conftest import POSTGRES, ROOT, write_sweep

DIVERGING = {"activation": "relu", "optimizer": "sgd", "learning_rate": 10.0, "preprocessing": "standardize", "units": 64, "epochs": 2}


def _study(stores) -> optuna.Study:
    return optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(stores["storage"]))


def _client(stores) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(store_uris.resolve_uri(stores["tracking_uri"]))


def _tiny(tmp_path, data_dir, stores, **changes):
    settings = {"data__subset": 600, "data__test_subset": 200, "data__data_dir": str(data_dir),
                "study__storage": stores["storage"], "tracking__tracking_uri": stores["tracking_uri"]}
    return write_sweep(tmp_path, **{**settings, **changes})


def test_a_diverging_trial_is_recorded_and_the_sweep_goes_on(tmp_path, data_dir, stores):
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=2, study__sampler="random", study__seed=7,
                 study__max_failures_in_a_row=10,
                 search_space__optimizer="sgd", search_space__preprocessing="standardize", search_space__units=64,
                 search_space__activation="relu", search_space__dropout=0.0,
                 search_space__epochs=2,
                 search_space__learning_rate={"type": "categorical", "choices": [0.01, 10.0]})
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    trials = _study(stores).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and sum(t.state == TrialState.COMPLETE for t in trials) == 2, [t.params for t in trials]
    for trial in failed:
        assert "NonFiniteLossError: loss became nan" in trial.user_attrs["error"]
        run = _client(stores).get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and "NonFiniteLossError" in run.data.tags["sweep.error"]


def test_failures_in_a_row_stop_the_sweep_with_a_clear_message(tmp_path, data_dir, stores, capsys):
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=5, study__max_failures_in_a_row=2,
                 **{f"search_space__{k}": v for k, v in DIVERGING.items()})
    assert cli.main(["run", str(path), "--no-progress"]) == 1
    assert "2 trials failed in a row (study.max_failures_in_a_row is 2)" in capsys.readouterr().err
    assert [t.state for t in _study(stores).trials] == [TrialState.FAIL] * 2
    (parent,) = _client(stores).search_runs(
        [_client(stores).get_experiment_by_name("fashion-mnist-smoke").experiment_id], "tags.`sweep.role` = 'parent'")
    assert parent.info.status == "KILLED"


def test_unreachable_tracking_server_is_refused_before_training(tmp_path, data_dir, stores, capsys):
    port = free_port()
    path = _tiny(tmp_path, data_dir, stores)
    started = time.time()
    assert cli.main(["run", str(path), "--tracking-uri", f"http://127.0.0.1:{port}"]) == 1
    assert f"the MLflow tracking server http://127.0.0.1:{port} is unreachable" in capsys.readouterr().err
    assert time.time() - started < 30
    assert not (tmp_path / "optuna.db").exists(), "no study was created"


def _sweep_process(path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_running_trial(stores, process: subprocess.Popen, after: int = 0, seconds: float = 180) -> None:
    """Until a trial numbered `after` or later is RUNNING in the study with its MLflow run started (read from
    the storage): the moment a crash must leave both to be cleaned up."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        if store_uris.local_path(store_uris.resolve_uri(stores["storage"])).exists():
            try:
                running = _study(stores).get_trials(states=(TrialState.RUNNING,))
                if any(t.number >= after and "mlflow_run_id" in t.user_attrs for t in running):
                    time.sleep(1)  # usually inside the trial's training by now; either way mid-trial
                    return
            except (KeyError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
                pass  # the sweep is creating the storage's tables as we look
        time.sleep(0.5)
    pytest.fail("no trial started")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_sigkill_mid_trial_then_rerun_resumes_to_the_total(tmp_path, data_dir, stores, kind):
    """Killed in the study's last trial: the dead trial must not hold its place in the budget (it once
    did, and every rerun said "nothing to do"). The rerun's summary names the trial it failed."""
    if kind == "journal":
        stores = {**stores, "storage": f"journal:///{tmp_path}/optuna.journal"}
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=2, search_space__epochs=6,
                 data__subset=3000)
    process = _sweep_process(path)
    _wait_for_running_trial(stores, process, after=1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert [t.state for t in _study(stores).trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    rerun = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 finished trials (1 run now)" in rerun.stdout
    assert re.search(r"^trial 1 of host \S+ was failed: its process died$", rerun.stdout, re.MULTILINE), rerun.stdout
    trials = _study(stores).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and killed[0].user_attrs["error"] == "its process died"
    client = _client(stores)
    runs = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"], "no run left RUNNING"
    assert client.get_run(killed[0].user_attrs["mlflow_run_id"]).info.status == "FAILED"


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_marks_the_trial_prints_the_summary_and_exits_non_zero(tmp_path, data_dir, stores,
                                                                            signum, status):
    """Ctrl-C, and the SIGTERM that docker stop, Kubernetes and batch schedulers send, to the supervisor alone."""
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=3, search_space__epochs=6, data__subset=3000)
    process = _sweep_process(path)
    _wait_for_running_trial(stores, process, after=1)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    trials = _study(stores).trials
    assert f"interrupted ({'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'}): trial {trials[-1].number} was " \
           "marked FAIL" in out and "best trial" in out, out
    assert "Traceback" not in err
    assert trials[-1].state == TrialState.FAIL
    client = _client(stores)
    assert client.get_run(trials[-1].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    (parent,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id],
                                   "tags.`sweep.role` = 'parent'")
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_a_worker_killed_mid_trial_stops_the_sweep_with_its_trial_failed(tmp_path, data_dir, stores):
    """The OOM killer picks the biggest process: a worker. The supervisor says so and cleans up."""
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=3, search_space__epochs=6, data__subset=3000)
    process = _sweep_process(path)
    _wait_for_running_trial(stores, process, after=1)
    (running,) = _study(stores).get_trials(states=(TrialState.RUNNING,))
    assert running.user_attrs["pid"] != process.pid, "trials run in a worker, not in the supervisor"
    os.kill(running.user_attrs["pid"], signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "worker 0 was killed by signal 9 without finishing its trial" in err and "Traceback" not in err
    trial = _study(stores).trials[running.number]
    assert trial.state == TrialState.FAIL and trial.user_attrs["error"] == "its process died"
    client = _client(stores)
    assert client.get_run(trial.user_attrs["mlflow_run_id"]).info.status == "FAILED"
    (parent,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id],
                                   "tags.`sweep.role` = 'parent'")
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_a_journal_cut_off_mid_line_is_repaired_and_the_study_runs_to_its_total(tmp_path, data_dir, capsys):
    """A crash mid-write leaves a partial last line; the next record must not be appended onto it."""
    journal = tmp_path / "optuna.journal"
    path = _tiny(tmp_path, data_dir, {"storage": f"journal:///{journal}", "tracking_uri": f"sqlite:///{tmp_path}/m.db"},
                 study__n_trials=2, search_space__epochs=1)
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    with open(journal, "rb+") as handle:
        handle.truncate(journal.stat().st_size - 40)
    capsys.readouterr()
    assert cli.main(["run", str(path), "--no-progress", "--n-trials", "4"]) == 0
    err = capsys.readouterr().err
    assert "optuna.journal: its last line was cut off by a crash (" in err and "bytes" in err and "removed it" in err
    lines = journal.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1]), "every line whole again"
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(f"journal:///{journal}"))
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 4
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert not list(tmp_path.glob("optuna.journal.lock*")), "Optuna's lock was taken and given back"
    capsys.readouterr()
    assert cli.main(["report", str(path), "--format", "csv"]) == 0, "the journal opens cleanly from then on"
    assert capsys.readouterr().err == ""


def test_a_journal_whose_last_record_lost_only_its_newline_keeps_that_record(tmp_path):
    """A crash between a record and its newline: the record is whole, so the trial it ended stays ended."""
    from pipeline.study import repair_journal

    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="s", storage=optuna_storage(f"journal:///{journal}"))
    study.add_trial(optuna.trial.create_trial(value=0.9, params={}, distributions={}))
    with open(journal, "rb+") as handle:
        handle.truncate(journal.stat().st_size - 1)
    message = repair_journal(f"journal:///{journal}")
    assert message == f"{journal}: its last record had lost its newline in a crash; restored it (nothing was lost)"
    assert journal.read_bytes().endswith(b"}\n") and repair_journal(f"journal:///{journal}") is None
    reread = optuna.load_study(study_name="s", storage=optuna_storage(f"journal:///{journal}"))
    assert [t.state for t in reread.trials] == [TrialState.COMPLETE] and reread.best_value == 0.9


class _SwallowsCtrlC:
    """Ctrl-C landing in a finalizer: Python prints "Exception ignored in ..." and drops the KeyboardInterrupt."""

    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)
        time.sleep(0.1)  # the handler runs here, inside __del__


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point of the test
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_python_drops_is_raised_again_at_the_next_safe_point(signum):
    stop, before = processes.StopRequest(), signal.getsignal(signal.SIGTERM)
    with stop.installed():
        _SwallowsCtrlC(signum)  # created and finalized at once; its KeyboardInterrupt goes nowhere
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        os.kill(os.getpid(), signum)  # a second signal only adds to the record: clean-up is not cut short
        time.sleep(0.1)
    assert stop.signal == signum
    assert signal.getsignal(signal.SIGTERM) == before, "the handlers are put back"


def _start_server(backend: str, artifacts, port: int, log) -> subprocess.Popen:
    server = start_group([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], stdout=log, stderr=log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
    except BaseException:
        stop_group(server)
        raise
    return server


@pytest.mark.slow
def test_tracking_server_lost_mid_sweep_stops_cleanly_and_a_rerun_resumes(tmp_path, data_dir, stores):
    port = free_port()
    backend, log = f"sqlite:///{tmp_path}/server.db", open(tmp_path / "server.log", "w")
    mlflow.MlflowClient(backend).search_experiments()  # create the schema before the server's processes race to
    server = _start_server(backend, tmp_path / "artifacts", port, log)
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=3, search_space__epochs=6, data__subset=3000,
                 tracking__tracking_uri=f"http://127.0.0.1:{port}")
    environment = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    command = [sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _wait_for_running_trial(stores, process, after=1)
    stop_group(server)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-2000:]
    assert "the sweep stopped, its finished trials are kept" in err
    assert sum(t.state == TrialState.COMPLETE for t in _study(stores).trials) >= 1
    server = _start_server(backend, tmp_path / "artifacts", port, log)
    try:
        rerun = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert sum(t.state == TrialState.COMPLETE for t in _study(stores).trials) == 3
        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        runs = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id])
        assert not [r for r in runs if r.info.status == "RUNNING"], "no run left RUNNING"
    finally:
        stop_group(server)


@pytest.mark.slow
def test_two_first_runs_at_once_on_empty_stores_both_succeed(tmp_path, data_dir):
    """Both race to create MLflow's SQLite schema and Optuna's journal; neither may crash."""
    path = write_sweep(tmp_path, study__n_trials=3, data__subset=400, data__test_subset=100,
                       data__data_dir=str(data_dir), search_space__epochs=1)
    command = [sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress"]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for process in runs:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="fashion-mnist-smoke",
                              storage=optuna_storage(f"journal:///{tmp_path}/mlruns/optuna.journal"))
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3


def _in_group(pid, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except (ProcessLookupError, TypeError):
        return False


@pytest.mark.slow
def test_a_sweep_waits_for_another_s_last_trial_and_runs_it_when_that_one_dies(tmp_path, data_dir):
    """Two `sweep run`s share a journal; the second is SIGKILLed (supervisor and worker, as a machine that loses
    power) while its trial holds one of the study's last places. The first does not leave with the study short:
    it waits for that trial, fails it once its process is gone, runs the missing trial, and says so."""
    stores = {"storage": f"journal:///{tmp_path}/optuna.journal", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=3, search_space__epochs=6, data__subset=3000)
    command = [sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress"]
    survivor, doomed = (subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, start_new_session=True) for _ in range(2))
    deadline = time.time() + 300
    while time.time() < deadline:
        assert survivor.poll() is None and doomed.poll() is None, "both still at work"
        try:
            trials = _study(stores).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        except (KeyError, OSError, ValueError):
            trials = []  # the journal is being created
        held = [t for t in trials if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                and _in_group(t.user_attrs.get("pid"), doomed.pid)]
        if len(trials) >= 3 and held:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the second sweep never held one of the study's last trials")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-3000:]
    assert "Study 'fashion-mnist-smoke': 3 finished trials" in out, out
    assert f"waiting for trial {held[0].number} of host " in out, out
    assert re.search(rf"^trial {held[0].number} of host \S+ was failed: its process died$", out, re.MULTILINE), out
    trials = _study(stores).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert trials[held[0].number].state == TrialState.FAIL
    client = _client(stores)
    runs = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"], "no run left RUNNING"


@pytest.mark.slow
def test_the_study_database_lost_mid_sweep_stops_it_in_one_line(tmp_path, data_dir, stores, new_database):
    """The study's PostgreSQL database goes away after the first trial: the sweep stops with one line naming the
    storage (no traceback from the worker or the supervisor, wherever it was noticed) and exits non-zero."""
    storage = new_database("optuna")
    path = _tiny(tmp_path, data_dir, stores, study__n_trials=4, search_space__epochs=6, data__subset=3000,
                 study__storage=storage)
    process = _sweep_process(path)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        try:
            if _study({"storage": storage}).get_trials(states=(TrialState.COMPLETE,)):
                break
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):
            pass  # the sweep is creating the study
        time.sleep(0.5)
    else:
        pytest.fail(f"no trial completed: {process.communicate()}")
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {storage.rsplit('/', 1)[1]} WITH (FORCE)")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"the study storage {store_uris.printable(storage)} failed mid-sweep: " in err, err[-3000:]
    assert "rerun the same command" in err and "during the commit" not in err, err[-3000:]
