"""A user's own network (`model.builder`): real sweeps on tiny Fashion-MNIST through `sweep run` with a builder
file of the test's own and with the shipped example, then export (as logged and refit) and predict; what the
runs and the study record of the builder, and a changed builder refused on rerun."""

from __future__ import annotations

import hashlib
import json

import keras
import mlflow
import mlflow.pyfunc
import numpy as np
import optuna
import pytest
from PIL import Image

from pipeline import cli, examples, keys, stores as store_uris
from pipeline.builders import first_values
from pipeline.config import load_sweep
from pipeline.data import load_splits
from pipeline.hyperparameters import Hyperparameters
from pipeline.tracking import models

from conftest import SWEEPS, write_sweep

# A small convolutional network of the test's own, reading two entries of the sweep file that are no built-in
# hyperparameters (channels, widen) beside a built-in one (dropout).
NET = '''
import keras


def build(params, inputs, n_outputs):
    x = keras.layers.Conv2D(params["channels"], 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    if params["widen"]:
        x = keras.layers.Conv2D(2 * params["channels"], 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(params["dropout"])(x)
    return keras.layers.Dense(n_outputs, activation="softmax")(x)
'''
OWN = {"channels": {"type": "int", "low": 4, "high": 8}, "widen": {"type": "categorical", "choices": [False, True]}}


def tiny_builder(tmp_path, data_dir, name="builder-test", **changes):
    """sweeps/smoke.yaml with the test's builder (models/net.py beside the sweep file): two short trials."""
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "net.py").write_text(NET)
    space = {"channels": OWN["channels"], "widen": OWN["widen"], "dropout": 0.1, "optimizer": "adam",
             "learning_rate": 0.003, "epochs": 3, "batch_size": 32}
    settings = {"model__builder": "models/net.py:build", "study__name": name, "study__n_trials": 2,
                "data__subset": 600, "data__test_subset": 300, "data__data_dir": str(data_dir),
                "study__storage": f"sqlite:///{tmp_path}/optuna.db",
                "tracking__tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                **{f"search_space__{key}": value for key, value in space.items()}}
    return write_sweep(tmp_path, **{**settings, **changes})


def study_of(config) -> optuna.Study:
    return optuna.load_study(study_name=config.study.name, storage=store_uris.resolve_uri(config.study.storage))


def artifact_text(client: mlflow.MlflowClient, run_id: str, path: str, tmp_path) -> str:
    return open(client.download_artifacts(run_id, path, str(tmp_path))).read()


def test_a_builder_sweeps_records_its_source_serves_raw_images_exports_and_predicts(data_dir, tmp_path, capsys):
    path = tiny_builder(tmp_path, data_dir)
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    config = load_sweep(path)
    study = study_of(config)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    source = (tmp_path / "models" / "net.py").read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert study.user_attrs[keys.BUILDER] == {"file": "models/net.py", "function": "build", "digest": digest,
                                              "path": str((tmp_path / "models" / "net.py").resolve())}

    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    mlflow.set_tracking_uri(store_uris.resolve_uri(config.tracking.tracking_uri))
    data = load_splits(config.data, config.study.seed)
    for trial in trials:
        run = client.get_run(trial.user_attrs[keys.RUN_ID])
        assert int(run.data.params["channels"]) == trial.params["channels"] == trial.user_attrs[keys.PARAMS]["channels"]
        assert run.data.params["widen"] == str(trial.params["widen"])
        assert artifact_text(client, run.info.run_id, f"{keys.BUILDER_DIR}/net.py", tmp_path / str(trial.number)) \
            == source
        model = models.load_model(models.trial_model_uri(run.info.run_id))
        assert any(isinstance(layer, keras.layers.Conv2D) for layer in model.get_layer("builder").layers)
        served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        accuracy = np.mean(np.asarray(served.predict(data.x_test)).argmax(axis=1) == data.y_test)
        assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
        assert accuracy > 0.2, "well above chance (0.1)"
    parent = client.get_run(study.user_attrs[keys.PARENT_RUN_ID])
    assert artifact_text(client, parent.info.run_id, f"{keys.BUILDER_DIR}/net.py", tmp_path / "parent") == source

    by_name = ["--study", config.study.name, "--storage", config.study.storage, "--tracking-uri",
               config.tracking.tracking_uri]  # the stored sweep file: its builder found where the study recorded it
    assert cli.main(["confirm", *by_name, "--top-k", "1", "--seeds", "2", "--no-progress"]) == 0
    (retrained,) = [r for r in client.search_runs([parent.info.experiment_id])
                    if r.data.tags.get(keys.ROLE) == "confirmation"]
    best = study.best_trial
    assert int(retrained.data.params["channels"]) == best.params["channels"], "rebuilt from the stored values"
    assert artifact_text(client, retrained.info.run_id, f"{keys.BUILDER_DIR}/net.py", tmp_path / "again") == source

    Image.fromarray(data.x_test[0]).save(tmp_path / "item.png")
    for out, given in ((tmp_path / "export", [str(path)]), (tmp_path / "refit", [*by_name, "--refit"])):
        assert cli.main(["export", *given, "--out", str(out), "--name", f"builder-{out.name}"]) == 0
        info = json.loads((out / "metadata.json").read_text())
        assert info["params"]["channels"] in (4, 5, 6, 7, 8) and info["test_accuracy"] > 0.2
        capsys.readouterr()
        assert cli.main(["predict", str(out), str(tmp_path / "item.png"), "--json"]) == 0
        (answer,) = json.loads(capsys.readouterr().out)
        assert answer["class"] in info["class_names"]


def test_a_changed_builder_is_refused_on_rerun_and_runs_as_a_new_study(data_dir, tmp_path, capsys):
    path = tiny_builder(tmp_path, data_dir, study__n_trials=1, search_space__epochs=1)
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    config = load_sweep(path)
    recorded = study_of(config).user_attrs[keys.BUILDER]["digest"]
    (tmp_path / "models" / "net.py").write_text(NET.replace('"relu"', '"gelu"'))
    capsys.readouterr()
    assert cli.main(["run", str(path), "--no-progress", "--n-trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "changed since the study started" in err and recorded[:12] in err and "study.name" in err, err
    assert len(study_of(config).trials) == 1, "nothing ran"
    assert cli.main(["export", str(path), "--out", str(tmp_path / "refit"), "--refit"]) == 2
    assert "changed since the study started" in capsys.readouterr().err and not (tmp_path / "refit").exists()
    renamed = write_sweep(tmp_path, "smoke.yaml", name="renamed.yaml", **{
        "model__builder": "models/net.py:build", "study__name": "builder-test-gelu", "study__n_trials": 1,
        "data__subset": 600, "data__test_subset": 300, "data__data_dir": str(data_dir),
        "study__storage": config.study.storage, "tracking__tracking_uri": config.tracking.tracking_uri,
        **{f"search_space__{key}": value for key, value in OWN.items()},
        "search_space__epochs": 1})
    assert cli.main(["run", str(renamed), "--no-progress"]) == 0
    assert study_of(load_sweep(renamed)).user_attrs[keys.BUILDER]["digest"] != recorded


def test_the_shipped_example_builder_sweeps_and_copies_out_with_its_file(data_dir, tmp_path, monkeypatch, capsys):
    example = load_sweep("builder")
    assert example.path == examples.folder() / "builder.yaml" and example.builder_path.is_file()
    path = write_sweep(tmp_path, "builder.yaml", study__n_trials=1, study__timeout=None, study__pruner="none",
                       data__subset=400, data__test_subset=100, data__data_dir=str(data_dir),
                       study__storage=f"sqlite:///{tmp_path}/optuna.db",
                       tracking__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", search_space__epochs=3,
                       search_space__width=16, search_space__blocks=1, search_space__batch_size=32,
                       search_space__learning_rate=0.003)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "residual_mlp.py").write_bytes(example.builder_path.read_bytes())
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    (trial,) = study_of(load_sweep(path)).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert trial.user_attrs[keys.PARAMS]["width"] == 16 and trial.value > 0.2
    monkeypatch.chdir(tmp_path)
    assert cli.main(["examples", "--out", "copies"]) == 0
    copied = load_sweep("copies/builder.yaml")
    assert copied.builder_path.read_bytes() == (SWEEPS / "models" / "residual_mlp.py").read_bytes()


def test_the_builders_own_entries_are_searched_stored_and_rebuilt():
    config = load_sweep(SWEEPS / "builder.yaml")
    first = first_values(config.search_space)
    assert (first["width"], first["blocks"], first["expansion"], first["optimizer"]) == (64, 1, 1, "adamw")
    params = Hyperparameters.from_dict(first)
    assert dict(params.builder_values) == {"width": 64, "blocks": 1, "expansion": 1}
    assert params.used("builder", "classification")["width"] == 64 and params.as_dict()["dropout"] == 0.0
    assert Hyperparameters.from_dict(params.used("builder", "classification")) == params
