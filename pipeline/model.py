"""The model builder: plain hyperparameters in, a compiled Keras model out. Knows nothing of Optuna.

Architecture: raw input (the data's shape and dtype: uint8 images as they are) -> flatten ->
preprocessing layers (fitted on the training split) -> `hidden_layers` x [Dense(units, activation) ->
Dropout(dropout)] -> Dense(classes, softmax). With the defaults on Fashion-MNIST this is the reference
tutorial's model, with its /255 inside. The same model is trained, logged, exported and served.
"""

from __future__ import annotations

import math

import keras

from pipeline.hyperparameters import Hyperparameters
from pipeline.preprocessing import FeatureStats, preprocessing_layers


def build_model(params: Hyperparameters, input_shape: tuple[int, ...], n_classes: int,
                stats: FeatureStats, input_dtype: str = "uint8") -> keras.Model:
    layers: list = [keras.Input(shape=input_shape, dtype=input_dtype, name="inputs"),
                    keras.layers.Reshape((math.prod(input_shape),), name="flatten")]
    layers += preprocessing_layers(params.preprocessing, stats, input_dtype)
    for index in range(params.hidden_layers):
        layers.append(keras.layers.Dense(params.units, activation=params.activation, name=f"dense_{index}"))
        layers.append(keras.layers.Dropout(params.dropout, name=f"dropout_{index}"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="probabilities"))
    model = keras.Sequential(layers, name="classifier")
    model.compile(
        optimizer=build_optimizer(params.optimizer, params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Resolve the optimizer by its Keras name, with the trial's learning rate."""
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})
