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
    flatten, scale, dense, dropout, output = model.layers
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
    normalization = model.layers[1]
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
