"""Classification: K class probabilities out (softmax), cross-entropy in training, accuracy as the headline."""

from __future__ import annotations

import keras
import numpy as np

from pipeline import keys, plots
from pipeline.hyperparameters import Hyperparameters
from pipeline.preprocessing import FeatureStats

MODEL_NAME = "classifier"
REPORT = "classification_report"  # scikit-learn's per-class precision, recall and f1
TEST_METRICS = (keys.TEST_ACCURACY, keys.TEST_LOSS)
TEST_DIRECTIONS = {keys.TEST_ACCURACY: "maximize", keys.TEST_LOSS: "minimize"}


def head(features, n_outputs: int, stats: FeatureStats):
    return keras.layers.Dense(n_outputs, activation="softmax", name="probabilities")(features)


def finish(outputs, stats: FeatureStats):
    """A builder's output is already the class probabilities (pipeline.builders checks that it is)."""
    return outputs


def compile_args(params: Hyperparameters) -> dict:
    loss = (keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
            if one_hot_labels(params) else "sparse_categorical_crossentropy")
    return {"loss": loss, "metrics": ["accuracy"]}


def trainer(model: keras.Model, params: Hyperparameters, stats: FeatureStats) -> keras.Model:
    """Training fits the model as it is served (its softmax's probabilities)."""
    return model


def one_hot_labels(params: Hyperparameters) -> bool:
    """Label smoothing needs one-hot targets (Keras' sparse cross-entropy has no smoothing)."""
    return params.label_smoothing > 0


def targets(params: Hyperparameters, y: np.ndarray, n_outputs: int, stats: FeatureStats) -> np.ndarray:
    return keras.utils.to_categorical(y, n_outputs) if one_hot_labels(params) else y


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and cross-entropy from predicted probabilities: the one definition everything reports."""
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    return {keys.TEST_ACCURACY: accuracy, keys.TEST_LOSS: float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))}


def figures(labels: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...]) -> list:
    return [("confusion_matrix", plots.confusion_figure(labels, probabilities.argmax(axis=1), class_names))]


def report(labels: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...]) -> dict:
    return plots.class_report(labels, probabilities.argmax(axis=1), class_names)
