"""A real smoke sweep, end to end in-process: Optuna trials, MLflow parent and child runs, resumption."""

from __future__ import annotations

import io
import shutil

import mlflow
import mlflow.pyfunc
import numpy as np
import optuna
import pandas as pd
import pytest

from pipeline import cli, stores as store_uris
from pipeline.config import load_sweep
from pipeline.data import load_splits
from pipeline.hyperparameters import used_names

from conftest import write_sweep

EXPERIMENT, STUDY = "fashion-mnist-smoke", "fashion-mnist-smoke"
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


def run(path, *args) -> int:
    return cli.main(["run", str(path), "--no-progress", *args])


def runs_by_role(tracking_uri: str):
    client = mlflow.MlflowClient(store_uris.resolve_uri(tracking_uri))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = sorted((r for r in runs if r.data.tags.get("sweep.role") == "trial"),
                      key=lambda r: int(r.data.tags["sweep.trial_number"]))
    return client, parents, children


@pytest.fixture
def swept(tiny_sweep, stores):
    """One tiny sweep of two trials, already run."""
    assert run(tiny_sweep) == 0
    return tiny_sweep


def test_sweep_logs_one_parent_and_a_child_per_trial(swept, stores):
    client, parents, children = runs_by_role(stores["tracking_uri"])
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    study = optuna.load_study(study_name=STUDY, storage=store_uris.resolve_uri(stores["storage"]))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial, child in zip(study.trials, children):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["sweep.trial_state"] == "COMPLETE"
        assert child.data.tags["sweep.study"] == STUDY
        assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
        assert set(child.data.params) == set(used_names("dense", "classification")), "the keys its model uses"
        assert child.data.metrics["val_accuracy"] == pytest.approx(trial.value)


def test_each_child_has_curves_test_metrics_dataset_and_a_model_that_serves_raw_images(swept, stores):
    client, _, children = runs_by_role(stores["tracking_uri"])
    config = load_sweep(swept)
    splits = load_splits(config.data, config.study.seed)
    assert splits.x_test.dtype == np.uint8
    for child in children:
        epochs = int(child.data.params["epochs"])
        for name in CURVES:
            history = client.get_metric_history(child.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), name
        assert child.data.metrics["epochs_run"] == epochs
        assert 0.2 < child.data.metrics["test_accuracy"] <= 1.0, "well above chance (0.1)"
        assert child.data.metrics["test_loss"] > 0
        (dataset_input,) = child.inputs.dataset_inputs
        assert dataset_input.dataset.name == "fashion_mnist-train" and len(dataset_input.dataset.digest) == 16
        # The logged model is the served model: raw uint8 images in, and the logged test accuracy out.
        model = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
        (spec,) = model.metadata.get_input_schema().inputs
        assert spec.type == np.dtype("uint8") and spec.shape == (-1, 28, 28)
        predictions = np.asarray(model.predict(splits.x_test))
        assert predictions.shape == (len(splits.y_test), 10)
        accuracy = np.mean(predictions.argmax(axis=1) == splits.y_test)
        assert accuracy == pytest.approx(child.data.metrics["test_accuracy"], abs=1e-6)


def test_parent_carries_the_sweep_file_and_the_best_trial(swept, stores):
    client, (parent,), children = runs_by_role(stores["tracking_uri"])
    assert parent.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "sweep")] == [f"sweep/{swept.name}"]
    best = max(children, key=lambda r: r.data.metrics["val_accuracy"])
    assert parent.data.tags["sweep.best_run_id"] == best.info.run_id
    assert parent.data.tags["sweep.best_trial_number"] == best.data.tags["sweep.trial_number"]
    assert float(parent.data.tags["sweep.best_value"]) == pytest.approx(best.data.metrics["val_accuracy"], abs=1e-6)
    assert parent.data.tags["sweep.sampler"] == "tpe"


def test_rerun_resumes_the_same_study_and_parent(swept, stores, capsys):
    assert run(swept, "--n-trials", "3") == 0
    _, parents, children = runs_by_role(stores["tracking_uri"])
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    study = optuna.load_study(study_name=STUDY, storage=store_uris.resolve_uri(stores["storage"]))
    assert len(study.trials) == 3
    # The resumed sampler does not replay the first trials' picks.
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3
    capsys.readouterr()
    assert run(swept, "--n-trials", "3") == 0
    out = capsys.readouterr().out
    assert "already has 3 finished trials of the 3 asked for; nothing to do" in out
    assert len(runs_by_role(stores["tracking_uri"])[2]) == 3


def test_summary_names_the_best_trial_and_the_ui_command(tiny_sweep, stores, capsys):
    assert run(tiny_sweep) == 0
    out = capsys.readouterr().out
    db = store_uris.sqlite_path(stores["tracking_uri"])
    assert "best trial" in out and "test_accuracy" in out and "run id" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{db}" in out


def test_missing_data_exits_2_naming_the_path(tmp_path, stores, capsys):
    path = write_sweep(tmp_path, data__data_dir=str(tmp_path / "nowhere"), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"])
    assert run(path) == 2
    assert f"{tmp_path / 'nowhere'}: data folder not found" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_study_is_its_name_in_its_storage(swept, stores, tmp_path, capsys):
    """The same study name in another storage is another study: its own parent run, its own trial numbers."""
    other = tmp_path / "other"
    other.mkdir()
    assert run(swept, "--storage", f"sqlite:///{other}/optuna.db") == 0
    client, parents, children = runs_by_role(stores["tracking_uri"])
    assert len(parents) == 2 and len({p.data.tags["sweep.storage"] for p in parents}) == 2
    for parent in parents:
        numbers = sorted(int(c.data.tags["sweep.trial_number"]) for c in children
                         if c.data.tags["mlflow.parentRunId"] == parent.info.run_id)
        assert numbers == [0, 1], "no trial number twice under one parent"
    capsys.readouterr()
    assert run(swept, "--storage", f"sqlite:///{tmp_path}/typo/optuna.db") == 2
    assert "typo does not exist; create it first" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_a_copied_store_keeps_its_runs_and_its_one_parent(tmp_path, data_dir, monkeypatch, capsys):
    """`cp -r mlruns S.yaml elsewhere/`: the copy's report shows its trials' runs, and a rerun from the copy
    resumes under the same parent run, saying that the store moved (the join once used the journal's path)."""
    original, copy = tmp_path / "original", tmp_path / "elsewhere"
    original.mkdir()
    path = write_sweep(original, study__n_trials=2, data__subset=600, data__test_subset=300,
                       data__data_dir=str(data_dir))  # the default stores, ./mlruns
    monkeypatch.chdir(original)
    assert run(path) == 0
    shutil.copytree(original, copy)
    monkeypatch.chdir(copy)
    capsys.readouterr()
    assert cli.main(["report", "tiny.yaml", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 2 and table["run_id"].notna().all() and table["test_accuracy"].notna().all()
    assert run(copy / "tiny.yaml", "--n-trials", "3") == 0
    err = capsys.readouterr().err
    assert err.count("the store moved") == 1 and str(copy / "mlruns" / "optuna.journal") in err
    _, parents, children = runs_by_role("sqlite:///mlruns/mlflow.db")  # the copy's
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].data.tags["sweep.study_storage"] == str(copy / "mlruns" / "optuna.journal")
    capsys.readouterr()
    assert run(copy / "tiny.yaml", "--n-trials", "3") == 0
    assert "the store moved" not in capsys.readouterr().err, "said once"
