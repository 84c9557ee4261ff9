"""Regression: one number out, in the label's own units; trained on the label standardized.

The model ends Dense(1) -> Rescaling(scale=std, offset=mean) (`label_units`), with the training split's mean
and standard deviation of the label: the Dense output is the standardized label, the built-in Rescaling maps
it back, so the model a trial logs answers in the label's units with no serving code and loads with safe_mode.

Training fits the standardized target. `trainer(model)` is the same network ending at the Rescaling's input
(its layers, so its weights, are the model's), compiled with the loss; the standardized targets come from
`targets`. Why not fit the whole model on raw labels: through the fixed Rescaling that scales the loss by
std² (and huber's delta by std), so the learning rates and the huber threshold a search space tries would mean
something else for every label's units; on standardized targets they mean the same for a price in cents or in
thousands. The per-epoch metrics (rmse, mae, r2, and val_ ones) are computed on the trainer's outputs mapped
back to the label's units (LabelUnits), so curves, pruning and the study's val_rmse read the label's units;
`loss` stays the standardized loss. The trainer is never saved: the saved model is compiled with built-ins only.
"""

from __future__ import annotations

import keras
import numpy as np

from pipeline import keys, plots
from pipeline.hyperparameters import Hyperparameters
from pipeline.preprocessing import FeatureStats

MODEL_NAME = "regressor"  # the served pyfuncs tell a regressor by it (tracking.array_pyfunc)
TEST_METRICS = (keys.TEST_RMSE, keys.TEST_MAE, keys.TEST_R2)
TEST_DIRECTIONS = {keys.TEST_RMSE: "minimize", keys.TEST_MAE: "minimize", keys.TEST_R2: "maximize"}
UNITS_LAYER = "label_units"
REPORT = "regression_report"  # the test metrics and the residuals' quantiles
RESIDUAL_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def head(features, n_outputs: int, stats: FeatureStats):
    return finish(keras.layers.Dense(1, name="standardized")(features), stats)


def finish(outputs, stats: FeatureStats):
    """The standardized prediction (a family's Dense(1), or a builder's one output) in the label's units."""
    return keras.layers.Rescaling(scale=stats.target_std, offset=stats.target_mean, name=UNITS_LAYER)(outputs)


def compile_args(params: Hyperparameters) -> dict:
    """The loss on standardized targets (huber's delta is one standard deviation of the label)."""
    losses = {"mse": keras.losses.MeanSquaredError, "huber": keras.losses.Huber, "mae": keras.losses.MeanAbsoluteError}
    return {"loss": losses[params.loss]()}


def trainer(model: keras.Model, params: Hyperparameters, stats: FeatureStats) -> keras.Model:
    """The model without its last step, sharing its weights and optimizer, compiled to fit standardized targets
    with metrics in the label's units."""
    fitted = keras.Model(model.input, model.get_layer(UNITS_LAYER).input, name=f"{MODEL_NAME}_standardized")
    metrics = [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae"),
               keras.metrics.R2Score(name="r2")]
    fitted.compile(optimizer=model.optimizer, jit_compile=params.jit_compile, **compile_args(params),
                   metrics=[LabelUnits(metric, stats) for metric in metrics])
    return fitted


class LabelUnits(keras.metrics.Metric):
    """A Keras metric of standardized targets and predictions, computed on both mapped back to the label's
    units (used by the trainer only, which is never saved)."""

    def __init__(self, metric: keras.metrics.Metric, stats: FeatureStats):
        super().__init__(name=metric.name)
        self.metric, self.mean, self.std = metric, stats.target_mean, stats.target_std

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.metric.update_state(y_true * self.std + self.mean, y_pred * self.std + self.mean, sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


def targets(params: Hyperparameters, y: np.ndarray, n_outputs: int, stats: FeatureStats) -> np.ndarray:
    return ((y - stats.target_mean) / stats.target_std).astype(np.float32).reshape(-1, 1)


def score(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """RMSE, MAE (the label's units) and R² from the model's predictions: the one definition everything reports."""
    errors = outputs.reshape(-1).astype(np.float64) - labels
    spread = float(np.sum(np.square(labels - labels.mean())))
    return {keys.TEST_RMSE: float(np.sqrt(np.mean(np.square(errors)))), keys.TEST_MAE: float(np.mean(np.abs(errors))),
            keys.TEST_R2: 1.0 - float(np.sum(np.square(errors))) / spread if spread else float("nan")}


def figures(labels: np.ndarray, outputs: np.ndarray, output_names: tuple[str, ...]) -> list:
    predicted = outputs.reshape(-1)
    return [("predicted_vs_actual", plots.predicted_figure(labels, predicted, output_names[0])),
            ("residuals", plots.residuals_figure(labels, predicted, output_names[0]))]


def report(labels: np.ndarray, outputs: np.ndarray, output_names: tuple[str, ...]) -> dict:
    """The test metrics and the residuals' (actual - predicted) quantiles, in the label's units."""
    residuals = labels - outputs.reshape(-1).astype(np.float64)
    return {"label": output_names[0], "rows": int(len(labels)), **score(outputs, labels),
            "residual_quantiles": {f"{q:g}": float(np.quantile(residuals, q)) for q in RESIDUAL_QUANTILES}}
