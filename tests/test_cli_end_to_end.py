"""The `sweep` console script in a real subprocess: the default flow, Keras' own loader, the reference model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import collections

import mlflow
import optuna
import pytest

from pipeline.study import optuna_storage

from conftest import ROOT, SWEEPS, write_sweep

pytestmark = pytest.mark.slow


def sweep(*args: str, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    command = [shutil.which("sweep") or sys.executable, *([] if shutil.which("sweep") else ["-m", "pipeline.cli"])]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_console_script_runs_a_tiny_sweep_with_default_stores_in_the_working_dir(tmp_path, data_dir):
    path = write_sweep(tmp_path, study__n_trials=3, study__trials_per_process=2, data__subset=400,
                       data__test_subset=200)
    result = sweep("run", str(path), "--data-dir", str(data_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    journal = tmp_path / "mlruns" / "optuna.journal"
    assert (tmp_path / "mlruns" / "mlflow.db").is_file() and journal.is_file()
    assert "3/3" in result.stderr, "progress bar over trials"
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlruns/mlflow.db" in result.stdout
    assert any((tmp_path / "mlruns" / "artifacts").rglob("*.keras")), "model artifacts under mlruns/"
    # After 2 trials the worker was replaced by a fresh one (fresh memory) and the study went on.
    assert result.stdout.count("a fresh worker continues") == 1
    assert "3 finished trials (3 run now)" in result.stdout
    # TensorFlow's own start-up lines stay off the terminal; each trial's line names its epochs once.
    for noise in ("cudart_stub", "cuda_platform", "absl::InitializeLog", "oneDNN"):
        assert noise not in result.stderr and noise not in result.stdout
    trial_lines = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 3 and all(line.count("epochs=") == 1 for line in trial_lines), trial_lines
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(f"journal:///{journal}"))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    per_worker = collections.Counter(t.user_attrs["pid"] for t in study.trials)
    assert sorted(per_worker.values()) == [1, 2] and os.getpid() not in per_worker
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["sweep.role"] == "parent"]
    assert parent.info.status == "FINISHED"
    trials = [r for r in runs if r.data.tags["sweep.role"] == "trial"]
    assert len(trials) == 3 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}


def test_keras_loader_reads_its_offline_cache(tmp_path, data_dir, stores):
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in data_dir.glob("*.gz"):
        shutil.copy(name, cache / name.name)
    path = write_sweep(tmp_path, study__n_trials=1, data__subset=300, data__test_subset=100,
                       study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"])
    result = sweep("run", str(path), "--no-progress", env={"KERAS_HOME": str(tmp_path / "keras")})
    assert result.returncode == 0, result.stderr
    client = mlflow.MlflowClient(stores["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id],
                                filter_string="tags.`sweep.role` = 'trial'")
    assert run.inputs.dataset_inputs[0].dataset.source.find("keras.datasets.fashion_mnist") >= 0


def test_keras_loader_failure_explains_how_to_supply_the_data(tmp_path, stores):
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (cache / name).write_bytes(b"not gzip")
    path = write_sweep(tmp_path, study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"])
    result = sweep("run", str(path), env={"KERAS_HOME": str(tmp_path / "keras")})
    assert result.returncode == 2
    assert "Keras could not load fashion_mnist" in result.stderr
    assert "--data-dir" in result.stderr and "fashion-mnist_train.csv" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_sweep_reproduces_the_reference_accuracy(data_dir, stores):
    """The tutorial's model (5 epochs on 54,000 images) lands near its published 0.8736."""
    result = sweep("run", str(SWEEPS / "seed.yaml"), "--data-dir", str(data_dir), "--no-progress",
                   "--storage", stores["storage"], "--tracking-uri", stores["tracking_uri"])
    assert result.returncode == 0, result.stderr
    client = mlflow.MlflowClient(stores["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-seed").experiment_id],
                                filter_string="tags.`sweep.role` = 'trial'")
    assert 0.865 <= run.data.metrics["test_accuracy"] <= 0.89
    assert run.data.params["units"] == "128" and run.data.params["epochs"] == "5"
