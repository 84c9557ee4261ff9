"""Training and evaluation of one compiled model on the raw splits (its preprocessing is inside it).

Per-epoch hooks (tracking, pruning, stop requests) are plain functions, so this module needs neither
MLflow nor Optuna.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import keras
import numpy as np

from pipeline.data import Splits
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import model_inputs

# Called after each epoch with (epoch starting at 1, {"loss": .., "accuracy": .., "val_loss": ..,
# "val_accuracy": ..}); returning True stops training after that epoch.
EpochHook = Callable[[int, dict], bool]
TEST_BATCH = 1024


@dataclass
class TrainResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    test_predictions: np.ndarray | None = None
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def last(self, metric: str) -> float:
        return self.history[metric][-1]


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


def start_fresh(seed: int) -> None:
    """Drop graphs and layers of earlier trials, and seed Python, NumPy and the backend."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def train_and_evaluate(model: keras.Model, data: Splits, params: Hyperparameters,
                       hooks: Sequence[EpochHook] = ()) -> TrainResult:
    """Fit for params.epochs (or until a hook stops it), then score the test set once."""
    result = TrainResult()
    model.fit(
        model_inputs(data.x_train), data.y_train,
        validation_data=(model_inputs(data.x_val), data.y_val) if len(data.y_val) else None,
        epochs=params.epochs, batch_size=params.batch_size,
        callbacks=[_HookCallback(result, hooks)], verbose=0,
    )
    probabilities = model.predict(model_inputs(data.x_test), batch_size=TEST_BATCH, verbose=0)
    result.test_predictions = probabilities.argmax(axis=1)
    result.test_accuracy, result.test_loss = score(probabilities, data.y_test)
    return result


def score(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and cross-entropy from predicted probabilities: the one definition everything reports."""
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    return accuracy, float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


class _HookCallback(keras.callbacks.Callback):
    def __init__(self, result: TrainResult, hooks: Sequence[EpochHook]):
        super().__init__()
        self.result, self.hooks = result, hooks

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for name, value in logs.items():
            self.result.history.setdefault(name, []).append(value)
        if not math.isfinite(logs.get("loss", 0.0)):
            raise NonFiniteLossError(f"loss became {logs['loss']} in epoch {epoch + 1}")
        stop = [hook(epoch + 1, logs) for hook in self.hooks]
        if any(stop):
            self.result.stopped_early = True
            self.model.stop_training = True
