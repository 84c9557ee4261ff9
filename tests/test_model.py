"""The model builder and the hyperparameter names it accepts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.data.records import InputSpec
from pipeline.hyperparameters import ACTIVATIONS, OPTIMIZERS, Hyperparameters
from pipeline.model import build_model
from pipeline.preprocessing import fit_stats

IMAGES = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)


def build(params: Hyperparameters) -> keras.Model:
    return build_model(params, InputSpec((28, 28), "uint8"), 10, fit_stats(IMAGES))


def test_default_params_build_the_reference_network_with_its_preprocessing_inside():
    model = build(Hyperparameters())
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape) == (None, 28, 28)
    _, flatten, scale, dense, dropout, output = model.layers  # the InputLayer first
    assert isinstance(flatten, keras.layers.Reshape) and isinstance(scale, keras.layers.Rescaling)
    assert scale.scale == pytest.approx(1 / 255)
    assert (dense.units, dense.activation.__name__) == (128, "relu")
    assert dropout.rate == pytest.approx(0.2)
    assert (output.units, output.activation.__name__) == (10, "softmax")
    assert model.count_params() == 784 * 128 + 128 + 128 * 10 + 10
    assert model.loss == "sparse_categorical_crossentropy"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    probabilities = model.predict(IMAGES, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_standardize_bakes_the_training_statistics_into_the_model():
    model = build(Hyperparameters(preprocessing="standardize"))
    normalization = model.layers[2]
    assert isinstance(normalization, keras.layers.Normalization)
    np.testing.assert_allclose(np.asarray(normalization.mean).ravel(), IMAGES.reshape(64, -1).mean(axis=0),
                               rtol=1e-5)


def test_depth_width_and_optimizer_follow_the_params():
    params = Hyperparameters(units=32, hidden_layers=3, dropout=0.0, activation="gelu", optimizer="rmsprop",
                             learning_rate=0.01)
    model = build(params)
    hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]
    assert [layer.units for layer in hidden] == [32, 32, 32]
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_allowed_activation_resolves_in_keras(name):
    assert callable(keras.activations.get(name))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_allowed_optimizer_resolves_in_keras(name):
    model = build(Hyperparameters(units=4, optimizer=name, learning_rate=0.05))
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_a_model_too_large_to_train_in_the_memory_available_fails_before_it_trains(monkeypatch):
    """The data check cannot see the model (a Dense layer over 4000x4000 pixels is 16 million weights a unit):
    each trial's built model is checked before fit, so the trial fails with the figures, not the worker in the
    kernel's OOM killer."""
    from pipeline.data import memory
    from pipeline.data.records import Splits
    from pipeline.training import train_and_evaluate

    params = Hyperparameters(units=32, epochs=1)
    model = build(params)
    labels = np.arange(64) % 10
    splits = Splits(IMAGES, labels, IMAGES[:10], labels[:10], IMAGES[:10], labels[:10], tuple("abcdefghij"), "x")
    needed = model.count_params() * memory.TRAINING_BYTES_PER_PARAMETER
    monkeypatch.setattr(memory, "available_bytes", lambda: needed - 1)
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(memory.ModelMemoryError, match=r"the model has 25,450 parameters; training them needs at "
                                                      r"least 0\.0 GiB more .* narrow the search space"):
        train_and_evaluate(model, splits, params)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))  # it never trained
    monkeypatch.setattr(memory, "available_bytes", lambda: needed)
    assert train_and_evaluate(model, splits, params).epochs_run == 1
    with pytest.raises(memory.ModelMemoryError, match="2,000,000,000 parameters; training them needs at least "
                                                      r"22\.4 GiB more"):
        memory.check_model_fits(2_000_000_000, available=20 * memory.GIB)  # the 4000x4000 case, 125 units
