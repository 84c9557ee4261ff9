"""The model builder and the hyperparameter names it accepts."""

from __future__ import annotations

import keras
import pytest

from pipeline.hyperparameters import ACTIVATIONS, OPTIMIZERS, Hyperparameters
from pipeline.model import build_model


def test_default_params_build_the_reference_network():
    model = build_model(Hyperparameters())
    dense, dropout, output = model.layers
    assert (dense.units, dense.activation.__name__) == (128, "relu")
    assert dropout.rate == pytest.approx(0.2)
    assert (output.units, output.activation.__name__) == (10, "softmax")
    assert model.count_params() == 784 * 128 + 128 + 128 * 10 + 10
    assert model.loss == "sparse_categorical_crossentropy"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_depth_width_and_optimizer_follow_the_params():
    params = Hyperparameters(units=32, hidden_layers=3, dropout=0.0, activation="gelu", optimizer="rmsprop",
                             learning_rate=0.01)
    model = build_model(params)
    hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]
    assert [layer.units for layer in hidden] == [32, 32, 32]
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_allowed_activation_resolves_in_keras(name):
    assert callable(keras.activations.get(name))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_allowed_optimizer_resolves_in_keras(name):
    model = build_model(Hyperparameters(units=4, optimizer=name, learning_rate=0.05))
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
