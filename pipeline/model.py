"""The model builder: plain hyperparameters in, a compiled Keras ANN out. Knows nothing of Optuna.

Architecture: `hidden_layers` x [Dense(units, activation) -> Dropout(dropout)] -> Dense(10, softmax),
on 784 preprocessed pixels. With the defaults this is exactly the reference tutorial's model.
"""

from __future__ import annotations

import keras
import numpy as np

from pipeline.hyperparameters import Hyperparameters
from pipeline.preprocessing import N_FEATURES, Scaler

IMAGE_SHAPE = (28, 28)

N_CLASSES = 10


def build_model(params: Hyperparameters, input_dim: int = N_FEATURES) -> keras.Model:
    layers: list[keras.layers.Layer] = [keras.Input(shape=(input_dim,), name="pixels")]
    for index in range(params.hidden_layers):
        layers.append(keras.layers.Dense(params.units, activation=params.activation, name=f"dense_{index}"))
        layers.append(keras.layers.Dropout(params.dropout, name=f"dropout_{index}"))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", name="probabilities"))
    model = keras.Sequential(layers, name="fashion_mnist_ann")
    model.compile(
        optimizer=build_optimizer(params.optimizer, params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Resolve the optimizer by its Keras name, with the trial's learning rate."""
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})


def build_serving_model(trained: keras.Model, scaler: Scaler) -> keras.Model:
    """Raw 28x28 uint8 images in, 10 probabilities out: the trial's preprocessing as built-in layers.

    Built-in layers only (no Lambda, no custom class), so the file loads with safe_mode=True anywhere.
    """
    images = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="images")
    flat = keras.layers.Reshape((N_FEATURES,), name="flatten")(images)
    scaled = keras.layers.Normalization(mean=scaler.mean, variance=np.asarray(scaler.variance),
                                        name=f"{scaler.method}")(flat)
    return keras.Model(images, trained(scaled), name="fashion_mnist_classifier")
