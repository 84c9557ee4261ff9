"""The cnn family (`model.family: cnn`): real sweeps on tiny image data, from an image folder and from a Keras
dataset, through `sweep run`, then export and predict; and what the family builds and logs."""

from __future__ import annotations

import json

import keras
import mlflow
import mlflow.pyfunc
import numpy as np
import optuna
import pytest
from PIL import Image

from pipeline import cli, keys, stores as store_uris
from pipeline.config import load_sweep
from pipeline.data import load_splits
from pipeline.data.records import InputSpec
from pipeline.families import cnn
from pipeline.hyperparameters import FAMILY_ONLY, Hyperparameters, used_names
from pipeline.model import Design, build_model
from pipeline.preprocessing import fit_stats
from pipeline.tracking import models

from conftest import write_sweep
from test_sources import NAMES, digits, write_folder  # noqa: F401 (digits is a fixture)


def tiny_cnn(tmp_path, **changes):
    """sweeps/fashion_mnist_cnn.yaml shrunk to two short trials of small networks, stores in tmp_path."""
    settings = {"study__n_trials": 2, "study__timeout": None, "study__pruner": "none",
                "study__storage": f"sqlite:///{tmp_path}/optuna.db", "search_space__epochs": 3,
                "tracking__tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                "search_space__filters": {"type": "int", "low": 8, "high": 12, "log": True},
                "search_space__conv_blocks": {"type": "int", "low": 1, "high": 2}, "search_space__units": 32,
                "search_space__batch_size": 32, "search_space__learning_rate": 0.003,
                "search_space__batch_norm": False}  # its moving averages need more steps than these trials take
    return write_sweep(tmp_path, "fashion_mnist_cnn.yaml", **{**settings, **changes})


def swept_trials(path):
    """Run the sweep; its trials with their MLflow runs."""
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    config = load_sweep(path)
    study = optuna.load_study(study_name=config.study.name, storage=store_uris.resolve_uri(config.study.storage))
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    return config, [(t, client.get_run(t.user_attrs[keys.RUN_ID])) for t in trials]


def check_served_cnn(config, trials, picture, tmp_path, capsys) -> None:
    """Each trial's logged model is a cnn that serves raw images with the logged test accuracy, above chance;
    the best exports and predicts from a picture file."""
    mlflow.set_tracking_uri(store_uris.resolve_uri(config.tracking.tracking_uri))
    data = load_splits(config.data, config.study.seed)
    for trial, run in trials:
        model = models.load_model(models.trial_model_uri(run.info.run_id))
        assert any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
        assert set(run.data.params) == set(used_names("cnn", "classification")) and "loss" not in run.data.params
        served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        accuracy = np.mean(np.asarray(served.predict(data.x_test)).argmax(axis=1) == data.y_test)
        assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
        assert accuracy > 2 / len(data.class_names), "well above chance"
    out = tmp_path / "export"
    assert cli.main(["export", str(config.path), "--out", str(out), "--name", f"{config.study.name}-cnn"]) == 0
    info = json.loads((out / "metadata.json").read_text())
    assert info["params"]["conv_blocks"] in (1, 2) and info["test_accuracy"] > 2 / len(data.class_names)
    capsys.readouterr()
    assert cli.main(["predict", str(out), str(picture), "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["class"] in info["class_names"]


def test_a_cnn_sweeps_a_keras_dataset_serves_raw_images_exports_and_predicts(data_dir, tmp_path, capsys):
    path = tiny_cnn(tmp_path, data__data_dir=str(data_dir), data__subset=600, data__test_subset=300,
                    data__validation_fraction=0.2)
    config, trials = swept_trials(path)
    data = load_splits(config.data, config.study.seed)
    Image.fromarray(data.x_test[0]).save(tmp_path / "item.png")
    check_served_cnn(config, trials, tmp_path / "item.png", tmp_path, capsys)


def test_a_cnn_sweeps_an_image_folder_serves_raw_images_exports_and_predicts(digits, tmp_path, capsys):
    images, labels = digits
    root = tmp_path / "pictures"
    write_folder(root / "train", images[:400], labels[:400], mode="RGB", scale=2)
    write_folder(root / "test", images[400:550], labels[400:550], mode="RGB", scale=2)
    path = tiny_cnn(tmp_path, data__dataset="images", data__data_dir=str(root), data__validation_fraction=0.2,
                    data__image_size=[16, 16], data__color="rgb", search_space__epochs=6)
    config, trials = swept_trials(path)
    check_served_cnn(config, trials, next((root / "test" / NAMES[3]).iterdir()), tmp_path, capsys)


@pytest.mark.parametrize("shape", [(28, 28), (9, 7, 3), (2, 2)])
def test_the_blocks_double_their_filters_and_stop_pooling_once_the_map_is_too_small(shape):
    images = np.zeros((4, *shape), np.uint8)
    params = Hyperparameters(conv_blocks=4, filters=8, batch_norm=True, head_pooling="flatten", shift_pixels=1)
    model = build_model(params, InputSpec.of(images), 3, fit_stats(images), Design("cnn"))
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [8, 16, 32, 64]
    assert all(min(layer.input.shape[1:3]) >= 2 for layer in model.layers
               if isinstance(layer, keras.layers.MaxPooling2D))
    assert model.predict(images, verbose=0).shape == (4, 3)


def test_a_cnn_saves_and_loads_in_safe_mode(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (8, 12, 12, 3), dtype=np.uint8)
    params = Hyperparameters(conv_blocks=2, filters=4, double_filters=False, kernel_size=5, pooling="average",
                             preprocessing="standardize")
    model = build_model(params, InputSpec.of(images), 2, fit_stats(images), Design("cnn"))
    model.save(tmp_path / "cnn.keras")
    loaded = keras.saving.load_model(tmp_path / "cnn.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_flat_features_and_tables_have_no_image_for_a_cnn():
    assert cnn.refusal(InputSpec((784,), "float32")) and cnn.refusal(InputSpec((2,), "table", (("a", "number"),)))
    assert cnn.refusal(InputSpec((28, 28), "uint8")) is None


def test_each_trial_logs_the_hyperparameters_its_family_and_task_use_and_rebuilds_from_them():
    params = Hyperparameters(filters=16, loss="huber", units=64)
    dense, convolutional = params.used("dense", "classification"), params.used("cnn", "classification")
    assert not set(FAMILY_ONLY) & set(dense) and "loss" not in dense and "loss" not in convolutional
    assert set(FAMILY_ONLY) <= set(convolutional) and "loss" in params.used("dense", "regression")
    assert Hyperparameters.from_dict(convolutional) == params.replace(loss=Hyperparameters().loss)
