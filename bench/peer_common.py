"""What the peer scripts of row k share, the way a user's own scripts would: Keras' loader, a split
identical to the pipeline's (scikit-learn, stratified, 10 %, the run's seed), an epoch counter, the
deadline, and the result file the bench reads. Imports nothing from the pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import train_test_split

# The default sweep's space (sweeps/fashion_mnist.yaml), which every peer searches.
UNITS = (128, 1024)
LAYERS = (1, 3)
DROPOUT = (0.1, 0.5)
ACTIVATIONS = ["relu", "gelu", "silu"]
OPTIMIZERS = ["adam", "nadam", "adamw"]
LEARNING_RATE = (3e-4, 3e-3)
EPOCHS = (10, 40)
BATCH_SIZES = [128, 256, 512]
PREPROCESSING = ["standardize", "normalize"]


def load_split(seed: int):
    """Keras' Fashion-MNIST, flattened to 784 floats, with 10 % of train held out for validation exactly
    as the pipeline holds it out (same function, same seed, same stratification)."""
    (x, y), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.1, stratify=y, random_state=seed)
    flat = [a.reshape(len(a), -1).astype("float32") for a in (x_train, x_val, x_test)]
    return (flat[0], y_train), (flat[1], y_val), (flat[2], y_test)


def feature_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and variance of the training split (the pipeline's `standardize`)."""
    return x_train.mean(axis=0), x_train.var(axis=0)


def dense_stack(units: int, layers: int, activation: str, dropout: float) -> list:
    stack: list = []
    for _ in range(layers):
        stack += [keras.layers.Dense(units, activation=activation), keras.layers.Dropout(dropout)]
    return stack + [keras.layers.Dense(10, activation="softmax")]


class EpochCounter(keras.callbacks.Callback):
    """Counts every epoch trained into a shared list: KerasTuner deep-copies callbacks per trial, so the
    count cannot live on the callback itself."""

    def __init__(self, tally: list):
        super().__init__()
        self.tally = tally

    def __deepcopy__(self, memo):
        return EpochCounter(self.tally)

    def on_epoch_end(self, epoch, logs=None):
        self.tally.append(time.time())


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options every peer script takes, besides its own: the seed, the budget, the result file."""
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True, help="seconds of search")
    parser.add_argument("--out", required=True, help="the JSON result file the bench reads")
    return parser.parse_args()


def write_result(path: str, **figures) -> None:
    Path(path).write_text(json.dumps(figures, indent=2, default=float))
