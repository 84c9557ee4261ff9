"""The training levers (batch norm, weight decay, label smoothing, schedules, best-epoch weights, shifts,
XLA): built into the model or the fit as the params say, trained for real on a few hundred images, and
saved models that load in safe mode and serve raw images."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from pipeline.config import DataConfig, load_sweep
from pipeline.data import load_splits
from pipeline.data.records import InputSpec
from pipeline.errors import SweepConfigError
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import build_model
from pipeline.preprocessing import fit_stats
from pipeline.training import start_fresh, train_and_evaluate
from tests.conftest import write_sweep

ALL_ON = Hyperparameters(units=64, epochs=3, batch_size=64, batch_norm=True, weight_decay=0.01,
                         label_smoothing=0.1, lr_schedule="cosine", restore_best=True, shift_pixels=2)


@pytest.fixture(scope="module")
def splits(data_dir):
    return load_splits(DataConfig(dataset="fashion_mnist", data_dir=str(data_dir), subset=1500, test_subset=500,
                                  validation_fraction=0.2), seed=3)


def test_each_lever_shapes_the_compiled_model(splits):
    model = build_model(ALL_ON, splits.inputs, 10, fit_stats(splits.x_train))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:4] == ["InputLayer", "Reshape", "RandomTranslation", "Reshape"]
    assert kinds[5:9] == ["Dense", "BatchNormalization", "Activation", "Dropout"]
    assert model.layers[5].use_bias is False
    assert model.optimizer.weight_decay == pytest.approx(0.01)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    # XLA: on where every layer supports it (RandomTranslation does not; Keras then warns and trains without)
    xla = build_model(ALL_ON.replace(shift_pixels=0, jit_compile=True), splits.inputs, 10, fit_stats(splits.x_train))
    assert xla.jit_compile is True and model.jit_compile is False
    plain = build_model(Hyperparameters(), splits.inputs, 10, fit_stats(splits.x_train))
    assert [type(layer).__name__ for layer in plain.layers] == ["InputLayer", "Reshape", "Rescaling", "Dense", "Dropout",
                                                               "Dense"]


def test_all_levers_train_above_chance_and_keep_the_best_epoch(splits):
    start_fresh(5)
    model = build_model(ALL_ON, splits.inputs, 10, fit_stats(splits.x_train))
    result = train_and_evaluate(model, splits, ALL_ON)
    val = result.history["val_accuracy"]
    assert result.kept_epoch == int(np.argmax(val)) + 1
    assert result.final("val_accuracy") == max(val)
    assert result.test_accuracy > 0.5, "well above chance (0.1)"
    # cosine: the last epoch (index 2 of 3) trained at lr * (1 + cos(2pi/3)) / 2
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001 * 0.5 * (1 + math.cos(2 * math.pi / 3)),
                                                                 rel=1e-4)
    # the model ends with the kept epoch's weights: its validation accuracy is the kept epoch's
    probabilities = model.predict(splits.x_val, verbose=0)
    assert np.mean(probabilities.argmax(axis=1) == splits.y_val) == pytest.approx(max(val), abs=1e-6)


def test_shifts_act_in_training_only_and_the_saved_model_serves_raw_images(splits, tmp_path):
    model = build_model(ALL_ON, splits.inputs, 10, fit_stats(splits.x_train))
    images = splits.x_test[:32]
    served = model.predict(images, verbose=0)
    np.testing.assert_array_equal(served, model.predict(images, verbose=0))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), served, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(model(images, training=True)), served)  # shifted (and batch statistics)


def test_plateau_halves_the_learning_rate_when_validation_loss_stalls(splits):
    params = Hyperparameters(units=16, epochs=6, batch_size=64, learning_rate=0.05, lr_schedule="plateau")
    start_fresh(1)
    model = build_model(params, splits.inputs, 10, fit_stats(splits.x_train))
    result = train_and_evaluate(model, splits, params)
    expected, best, wait = 0.05, math.inf, 0  # Keras' rule: 2 epochs without a 1e-4 improvement halve it
    for loss in result.history["val_loss"]:
        best, wait = (loss, 0) if loss < best - 1e-4 else (best, wait + 1)
        if wait >= 2:
            expected, wait = expected / 2, 0
    assert float(model.optimizer.learning_rate) == pytest.approx(expected)


def test_levers_from_mlflow_strings_and_refusals(tmp_path):
    params = Hyperparameters.from_dict({"batch_norm": "True", "restore_best": "False", "shift_pixels": "2",
                                        "label_smoothing": "0.1", "lr_schedule": "cosine"})
    assert (params.batch_norm, params.restore_best, params.shift_pixels) == (True, False, 2)
    with pytest.raises(SweepConfigError, match=r"search_space.batch_norm.*true or false"):
        load_sweep(write_sweep(tmp_path, search_space__batch_norm="yes"))
    with pytest.raises(SweepConfigError, match=r"search_space.lr_schedule.*allowed: constant, cosine, plateau"):
        load_sweep(write_sweep(tmp_path, search_space__lr_schedule="step"))
    with pytest.raises(SweepConfigError, match=r"search_space.shift_pixels.*'table' has rows"):
        load_sweep(write_sweep(tmp_path, "table.yaml", search_space__shift_pixels={"type": "int", "low": 0,
                                                                                   "high": 2}))
    with pytest.raises(ValueError, match="shift_pixels needs image inputs"):
        build_model(Hyperparameters(shift_pixels=1), InputSpec((784,), "float32"), 10,
                    fit_stats(np.zeros((4, 784), np.float32)))
