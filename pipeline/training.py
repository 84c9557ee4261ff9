"""Training and evaluation of one compiled model on the raw splits (its preprocessing is inside it).

Per-epoch hooks (tracking, pruning, stop requests) are plain functions, so this module needs neither
MLflow nor Optuna.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import keras
import numpy as np

from pipeline.data import Splits
from pipeline.data.memory import check_model_fits
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import model_inputs
from pipeline.preprocessing import FeatureStats
from pipeline.tasks import TASKS

# Called after each epoch with (epoch starting at 1, {"loss": .., "accuracy": .., "val_loss": ..,
# "val_accuracy": ..}, or a regression's rmse, mae, r2 and val_ ones in the label's units); returning True
# stops training after that epoch.
EpochHook = Callable[[int, dict], bool]
TEST_BATCH = 1024


@dataclass
class TrainResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)  # the task's TEST_METRICS, by keys name
    test_outputs: np.ndarray | None = None  # the model's outputs on the raw test inputs
    stopped_early: bool = False
    kept_epoch: int | None = None  # restore_best: the epoch whose weights the model ended with

    @property
    def test_accuracy(self) -> float:
        return self.test_metrics.get("test_accuracy", math.nan)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def final(self, metric: str) -> float:
        """The metric of the model as it ended: the last epoch's, or the kept epoch's (restore_best)."""
        return self.history[metric][(self.kept_epoch or self.epochs_run) - 1]


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


def start_fresh(seed: int) -> None:
    """Drop graphs and layers of earlier trials, and seed Python, NumPy and the backend."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def train_and_evaluate(model: keras.Model, data: Splits, params: Hyperparameters,
                       hooks: Sequence[EpochHook] = (), best_by: tuple[str, bool] = ("val_accuracy", True),
                       task: str = "classification", stats: FeatureStats | None = None) -> TrainResult:
    """Fit for params.epochs (or until a hook stops it), then score the test set once.

    best_by (metric, maximize) is what restore_best keeps the best epoch by: the study's metric. `stats`
    are the training statistics the model was built with (regression standardizes its targets by them). What
    is fit is the task's trainer, which shares the model's weights; the test outputs are the model's own."""
    check_model_fits(model.count_params())
    result, task_module = TrainResult(), TASKS[task]
    fitted = task_module.trainer(model, params, stats)
    labels = functools.partial(task_module.targets, params, n_outputs=len(data.class_names), stats=stats)
    validation = (model_inputs(data.x_val), labels(data.y_val)) if len(data.y_val) else None
    callbacks = [_HookCallback(result, hooks), *_schedule(params)]
    if params.restore_best and validation is not None:
        callbacks.append(_KeepBest(result, *best_by))  # last: it sees the epoch's logs once hooks have
    fitted.fit(model_inputs(data.x_train), labels(data.y_train), validation_data=validation,
              epochs=params.epochs, batch_size=params.batch_size, callbacks=callbacks, verbose=0)
    result.test_outputs = model.predict(model_inputs(data.x_test), batch_size=TEST_BATCH, verbose=0)
    result.test_metrics = task_module.score(result.test_outputs, data.y_test)
    return result


def _schedule(params: Hyperparameters) -> list[keras.callbacks.Callback]:
    """The learning-rate schedule as a callback, so the saved optimizer keeps a plain learning rate."""
    if params.lr_schedule == "cosine":
        top, epochs = params.learning_rate, params.epochs
        return [keras.callbacks.LearningRateScheduler(
            lambda epoch, _: top * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))]
    if params.lr_schedule == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2,
                                                  min_lr=params.learning_rate / 64)]
    return []


class _KeepBest(keras.callbacks.Callback):
    """restore_best: remembers the best epoch's weights by the study's metric and ends with them."""

    def __init__(self, result: TrainResult, metric: str, maximize: bool):
        super().__init__()
        self.result, self.metric, self.sign = result, metric, 1.0 if maximize else -1.0
        self.best, self.weights = -math.inf, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self.sign * float((logs or {}).get(self.metric, math.nan))
        if value > self.best:
            self.best, self.weights, self.result.kept_epoch = value, self.model.get_weights(), epoch + 1

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


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
