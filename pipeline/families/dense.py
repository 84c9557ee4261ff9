"""The dense family: `hidden_layers` x [Dense(units, activation) -> Dropout(dropout)] on the flattened
features; with batch_norm, Dense -> BatchNormalization -> activation -> Dropout. With the defaults on
Fashion-MNIST this is the reference tutorial's network."""

from __future__ import annotations

import keras

from pipeline.data.records import InputSpec
from pipeline.hyperparameters import Hyperparameters


def body(params: Hyperparameters, features, inputs: InputSpec):
    return dense_stack(params, features)


def refusal(inputs: InputSpec) -> str | None:
    return None  # every input flattens into a vector


def dense_stack(params: Hyperparameters, features):
    """The Dense layers the dense family is made of, and the head the cnn family ends with."""
    for index in range(params.hidden_layers):
        if params.batch_norm:
            features = keras.layers.Dense(params.units, use_bias=False, name=f"dense_{index}")(features)
            features = keras.layers.BatchNormalization(name=f"batch_norm_{index}")(features)
            features = keras.layers.Activation(params.activation, name=f"activation_{index}")(features)
        else:
            features = keras.layers.Dense(params.units, activation=params.activation, name=f"dense_{index}")(features)
        features = keras.layers.Dropout(params.dropout, name=f"dropout_{index}")(features)
    return features
