"""Several machines that share no disk: three working folders (each its own data copy, cwd and temp), one
mlflow server with a PostgreSQL store and proxied artifacts in a fourth folder, one study on PostgreSQL.

Two machines run the sweep at once and one loses power mid-trial (its process group SIGKILLed); the other
waits out the dead trial's heartbeat, fails it and completes the study. A third reports, confirms and exports
from the URLs alone.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from pipeline import keys
from pipeline.processes import free_port, start_group, stop_group, wait_for_http
from pipeline.study import is_surplus, optuna_storage

from conftest import write_sweep

pytestmark = pytest.mark.slow
STUDY = "fashion-mnist-smoke"
N_TRIALS = 4  # trials of a few seconds: the survivor cannot take them all before the other machine starts one
DEAD_HOST = "machine-2"  # the killed machine's host name: the survivor cannot see its pid, only its heartbeat
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def tracking_server(postgres_databases, tmp_path):
    """`mlflow server` as the README runs it for many machines (proxied artifacts, --allowed-hosts), in a folder
    of its own; yields its URL and its artifact folder."""
    folder = tmp_path / "server"
    folder.mkdir()
    port = free_port()
    hosts = f"tracking-host,tracking-host:{port},localhost,localhost:{port},127.0.0.1:{port}"
    mlflow.MlflowClient(postgres_databases[1]).search_experiments()  # schema first: the server's processes race
    server = start_group([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_databases[1],
                          "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                          "--port", str(port), "--allowed-hosts", hosts, "--workers", "2"],
                         cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", server)
        yield uri, folder / "artifacts"
    finally:
        stop_group(server)


def make_machine(root: Path, name: str, data_dir: Path, sweep_text: str | None = None,
                 host: str | None = None) -> Path:
    """A machine's working folder: its own copy of the data in data/, its own temp, and the sweep file."""
    folder = root / name
    (folder / "data").mkdir(parents=True)
    (folder / "tmp").mkdir()
    for file in IDX_FILES:
        shutil.copy(data_dir / file, folder / "data" / file)
    if sweep_text is not None:
        (folder / "sweep.yaml").write_text(sweep_text)
    if host is not None:  # its processes (the workers too: they inherit PYTHONPATH) take another host name
        (folder / "site").mkdir()
        (folder / "site" / "sitecustomize.py").write_text(f"import socket\nsocket.gethostname = lambda: {host!r}\n")
    return folder


def environment(folder: Path) -> dict[str, str]:
    """A machine's environment: its own temp folder, quiet TensorFlow, and its host name when it has one."""
    env = {**os.environ, "TMPDIR": str(folder / "tmp"), "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    if (folder / "site").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder / "site"), os.environ.get("PYTHONPATH")]))
    return env


def start(folder: Path, *args: str) -> subprocess.Popen:
    """`sweep ARGS` on a machine, in its own process group (so all of it can lose power at once); its output
    goes to files in its folder."""
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=folder, env=environment(folder),
                                stdout=out, stderr=err, start_new_session=True)


def finish(folder: Path, process: subprocess.Popen, timeout: float = 600) -> str:
    """Wait for a machine's command to end well; its stdout."""
    process.wait(timeout=timeout)
    assert process.returncode == 0, (folder / "stderr.txt").read_text()[-3000:]
    return (folder / "stdout.txt").read_text()


def run(folder: Path, *args: str) -> str:
    return finish(folder, start(folder, *args))


def _descends_from(pid, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or one of its descendants, from /proc."""
    while isinstance(pid, int) and pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def wait_for_own_trial(storage, machine: subprocess.Popen, folder: Path, seconds: float = 300
                       ) -> optuna.trial.FrozenTrial:
    """A RUNNING trial of this machine's processes that has opened its MLflow run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert machine.poll() is None, f"the machine ended before it ran a trial: {(folder / 'stderr.txt').read_text()}"
        if STUDY in optuna.get_all_study_names(storage):
            for trial in optuna.load_study(study_name=STUDY, storage=storage).get_trials(states=(TrialState.RUNNING,)):
                if keys.RUN_ID in trial.user_attrs and _descends_from(trial.user_attrs.get(keys.PID), machine.pid):
                    return trial
        time.sleep(0.2)
    raise AssertionError(f"no trial of the machine's processes was RUNNING within {seconds:.0f} s")


def test_machines_sharing_no_disk_survive_a_dead_one(tmp_path, data_dir, postgres_databases,
                                                     tracking_server):
    storage_url, (tracking_uri, artifacts) = postgres_databases[0], tracking_server
    assert_allowed_hosts(tracking_uri)
    storage = optuna_storage(storage_url)  # Optuna's tables first: the machines then only read their version
    sweep_text = write_sweep(tmp_path, study__n_trials=N_TRIALS, data__subset=600, data__test_subset=200,
                             data__data_dir="data", search_space__epochs=5).read_text()
    machines = tmp_path / "machines"
    survivor = make_machine(machines, "machine-1", data_dir, sweep_text)
    doomed = make_machine(machines, "machine-2", data_dir, sweep_text, host=DEAD_HOST)
    command = ["run", "sweep.yaml", "--storage", storage_url, "--tracking-uri", tracking_uri, "--no-progress"]
    first, second = start(survivor, *command), start(doomed, *command)
    try:
        dead = wait_for_own_trial(storage, second, doomed)
        os.killpg(second.pid, signal.SIGKILL)  # the machine loses power: its supervisor and workers die at once
        second.wait()
        out = finish(survivor, first)
    finally:
        for process in (first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert f"{N_TRIALS} finished trials ({N_TRIALS} run now)" in out, out
    assert f"trial {dead.number} of host {DEAD_HOST}" in out and "heartbeats" in out, out

    # Machines asking at once can overshoot the budget by one: that trial is refused before it trains or logs.
    trials = [t for t in optuna.load_study(study_name=STUDY, storage=storage).trials if not is_surplus(t)]
    states = {t.number: t.state for t in trials}
    assert states.pop(dead.number) == TrialState.FAIL and set(states.values()) == {TrialState.COMPLETE}
    (killed,) = [t for t in trials if t.number == dead.number]
    assert len(states) == N_TRIALS and "heartbeats" in killed.user_attrs[keys.ERROR]
    assert killed.user_attrs[keys.HOST] == DEAD_HOST
    runs = assert_one_run_per_trial(trials, tracking_uri)
    assert runs[dead.number].info.status == "FAILED"
    assert_models_went_through_the_server(trials, runs, tracking_uri, artifacts, tmp_path / "downloads")
    for folder in (survivor, doomed):
        assert not list(folder.glob("mlruns*")) and not list(folder.glob("mlflow.db")), f"{folder} kept a store"
        assert not list(folder.rglob("MLmodel")), f"{folder} kept a model"

    best = optuna.load_study(study_name=STUDY, storage=storage).best_trial.number
    assert_third_machine_works_from_the_urls(make_machine(machines, "machine-3", data_dir), storage_url,
                                             tracking_uri, trials, best)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(STUDY)
    assert not client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=1000)


def assert_allowed_hosts(uri: str) -> None:
    """--allowed-hosts: a request addressed to the server by a listed name is served, an unlisted one refused
    (MLflow >= 3.5 takes only localhost and private addresses unless the list names others)."""
    port = uri.rsplit(":", 1)[1]

    def status(host: str) -> int:
        request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
                                         headers={"Host": host})
        try:
            return urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status(f"tracking-host:{port}") == 200
    assert status(f"elsewhere:{port}") == 403


def assert_one_run_per_trial(trials: list, tracking_uri: str) -> dict:
    """Every trial, the dead one too, once in MLflow under the study's one parent run; none RUNNING.
    Returns the trial runs by trial number."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(STUDY)
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in found if r.data.tags.get(keys.ROLE) == "parent"]
    runs = {int(r.data.tags[keys.TRIAL]): r for r in found if r.data.tags.get(keys.ROLE) == "trial"}
    assert sorted(runs) == [t.number for t in trials] and len(runs) == len(found) - 1
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    assert {t.number: t.user_attrs[keys.RUN_ID] for t in trials} == {n: r.info.run_id for n, r in runs.items()}
    assert "RUNNING" not in {r.info.status for r in found}
    return runs


def assert_models_went_through_the_server(trials: list, runs: dict, tracking_uri: str, artifacts: Path,
                                          downloads: Path) -> None:
    """Each COMPLETE trial's model: stored in the server's artifact folder, and downloadable through its URL."""
    client = mlflow.MlflowClient(tracking_uri)
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        run = runs[trial.number]
        (model,) = client.search_logged_models([run.info.experiment_id],
                                               filter_string=f"source_run_id = '{run.info.run_id}'")
        assert model.artifact_location.startswith("mlflow-artifacts:/"), model.artifact_location
        assert (artifacts / model.artifact_location.removeprefix("mlflow-artifacts:/") / "MLmodel").is_file()
        local = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, tracking_uri=tracking_uri,
                                                    dst_path=str(downloads / str(trial.number)))
        assert (Path(local) / "MLmodel").is_file()


def assert_third_machine_works_from_the_urls(folder: Path, storage_url: str, tracking_uri: str, trials: list,
                                             best: int) -> None:
    """A fresh folder with only its data copy: report, confirm and export name the study, not a sweep file."""
    urls = ["--study", STUDY, "--storage", storage_url, "--tracking-uri", tracking_uri]
    table = pd.read_csv(io.StringIO(run(folder, "report", *urls, "--format", "csv")))
    assert sorted(table["trial"]) == [t.number for t in trials]
    assert sorted(table["state"]) == sorted(t.state.name for t in trials)
    assert table.loc[table["state"] == "COMPLETE", "test_accuracy"].notna().all(), "joined with the server's runs"

    confirmed = run(folder, "confirm", *urls, "--data-dir", "data", "--top-k", "1", "--seeds", "2", "--no-progress")
    assert f"Confirmation of study '{STUDY}' (2 seeds per configuration)" in confirmed, confirmed
    assert f"Winner: trial {best}," in confirmed, confirmed

    exported = run(folder, "export", *urls, "--out", "model_out")
    assert f"Exported trial #{best} of study '{STUDY}'" in exported, exported
    assert {"model.keras", "saved_model", "metadata.json"} <= {p.name for p in (folder / "model_out").iterdir()}
    assert not list(folder.glob("mlruns*")) and not list(folder.glob("mlflow.db")), "no store made on the machine"
