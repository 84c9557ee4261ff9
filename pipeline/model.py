"""The model builder: plain hyperparameters in, a compiled Keras model out. Knows nothing of Optuna.

Architecture: raw input (the data's shape and dtype: uint8 images as they are; a table's columns, one named
input each) -> flatten -> preprocessing layers (fitted on the training split) -> `hidden_layers` x
[Dense(units, activation) -> Dropout(dropout)] -> Dense(classes, softmax). With the defaults on
Fashion-MNIST this is the reference tutorial's model, with its /255 inside. The same model is trained,
logged, exported and served.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np

from pipeline.data.records import InputSpec
from pipeline.hyperparameters import Hyperparameters
from pipeline.preprocessing import FeatureStats, category_layer, preprocessing_layers


def build_model(params: Hyperparameters, inputs: InputSpec, n_classes: int, stats: FeatureStats) -> keras.Model:
    if inputs.is_table:
        model = _table_model(params, inputs, n_classes, stats)
    else:
        layers: list = [keras.Input(shape=inputs.shape, dtype=inputs.dtype, name="inputs"),
                        keras.layers.Reshape((math.prod(inputs.shape),), name="flatten")]
        layers += preprocessing_layers(params.preprocessing, stats, inputs.dtype)
        model = keras.Sequential(layers + _dense_stack(params, n_classes), name="classifier")
    model.compile(
        optimizer=build_optimizer(params.optimizer, params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def model_inputs(x: np.ndarray):
    """What the model is fed for inputs x: the array itself, or (a table) one (N, 1) column per named input,
    text as TensorFlow strings (Keras' NumPy adapter takes no text arrays)."""
    if x.dtype.names is None:
        return x
    import tensorflow as tf

    return {name: tf.constant(x[name].reshape(-1, 1)) if x.dtype[name].kind == "U" else x[name].reshape(-1, 1)
            for name in x.dtype.names}


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Resolve the optimizer by its Keras name, with the trial's learning rate."""
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})


def _dense_stack(params: Hyperparameters, n_classes: int) -> list:
    layers: list = []
    for index in range(params.hidden_layers):
        layers.append(keras.layers.Dense(params.units, activation=params.activation, name=f"dense_{index}"))
        layers.append(keras.layers.Dropout(params.dropout, name=f"dropout_{index}"))
    return layers + [keras.layers.Dense(n_classes, activation="softmax", name="probabilities")]


def _table_model(params: Hyperparameters, inputs: InputSpec, n_classes: int, stats: FeatureStats) -> keras.Model:
    """One input per column, keyed by the column's name: numbers scaled together, each text column one-hot."""
    layer_names = _layer_names(inputs.columns)
    feeds = {name: keras.Input(shape=(1,), dtype="string" if kind == "text" else "float32", name=layer_names[name])
             for name, kind in inputs.columns}
    parts = [category_layer(stats.categories[name], f"onehot_{layer_names[name]}")(feeds[name])
             for name, kind in inputs.columns if kind == "text"]
    numbers = [feeds[name] for name, kind in inputs.columns if kind == "number"]
    if numbers:
        joined = keras.layers.Concatenate(name="numbers")(numbers) if len(numbers) > 1 else numbers[0]
        for layer in preprocessing_layers(params.preprocessing, stats, "float32"):
            joined = layer(joined)
        parts.insert(0, joined)
    features = keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    outputs = features
    for layer in _dense_stack(params, n_classes):
        outputs = layer(outputs)
    return keras.Model(feeds, outputs, name="classifier")


def _layer_names(columns: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Each column's name as a unique Keras layer name that TensorFlow's SavedModel signatures also take
    (letters, digits, _ . -); the input dict keeps the column's own name."""
    names: dict[str, str] = {}
    for column, _ in columns:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", column).lstrip("._-") or "column"
        name, count = base, 1
        while name in names.values():
            count += 1
            name = f"{base}_{count}"
        names[column] = name
    return names
