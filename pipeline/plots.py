"""Figures people would rather look at than read: per-trial curves and confusion matrix (a regression's predicted
against actual and residuals), per-study plots.

Matplotlib only, drawn off-screen; the tracking module stores them as PNG artifacts.
"""

from __future__ import annotations

import sys
import warnings

import matplotlib

# Off-screen: no display on servers and CI (must precede pyplot). Not in a Jupyter kernel, where the sweep's
# supervisor runs beside the user's own plots: the kernel's inline backend draws off-screen too, and Agg would
# silence every later plt.show() there.
if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from sklearn.metrics import classification_report, confusion_matrix  # noqa: E402



def learning_curves(history: dict[str, list[float]]):
    """Loss and the task's metric (accuracy; a regression's rmse, in the label's units) per epoch, training and
    validation side by side."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axis, metric in zip(axes, ("loss", "rmse" if "rmse" in history else "accuracy")):
        axis.plot(epochs, history[metric], marker="o", label="training")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        axis.set(xlabel="epoch", ylabel=metric, title=metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]):
    """The test-set confusion matrix with class names, counts in each cell."""
    matrix = confusion_matrix(labels, predictions, labels=range(len(class_names)))
    side = max(7, min(30, 0.3 * len(class_names)))  # a hundred classes need room for their names
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(matrix, cmap="Blues")
    font = 8 if len(class_names) <= 20 else 5
    axis.set_xticks(range(len(class_names)), class_names, rotation=45 if font == 8 else 90, ha="right", fontsize=font)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=font)
    axis.set(xlabel="predicted", ylabel="true", title="test set confusion matrix")
    if len(class_names) <= 20:  # counts in the cells while they can be read
        for (row, column), count in np.ndenumerate(matrix):
            axis.text(column, row, count, ha="center", va="center", fontsize=8,
                      color="white" if count > matrix.max() / 2 else "black")
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    return figure


def predicted_figure(actual: np.ndarray, predicted: np.ndarray, label: str):
    """A regression's test predictions against the actual values, with the diagonal a perfect model lies on."""
    figure, axis = plt.subplots(figsize=(6, 6))
    axis.scatter(actual, predicted, s=12, alpha=0.6)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="tab:gray", linestyle="--", label="predicted = actual")
    axis.set(xlabel=f"actual {label}", ylabel=f"predicted {label}", title="test set: predicted against actual")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    figure.tight_layout()
    return figure


def residuals_figure(actual: np.ndarray, predicted: np.ndarray, label: str):
    """A regression's test residuals (actual - predicted) against the prediction: a trend or a funnel shows
    what the model misses."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.scatter(predicted, actual - predicted, s=12, alpha=0.6)
    axis.axhline(0.0, color="tab:gray", linestyle="--")
    axis.set(xlabel=f"predicted {label}", ylabel="residual (actual - predicted)", title="test set residuals")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def class_report(labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Precision, recall and F1 per class (scikit-learn's report, keyed by class name)."""
    return classification_report(labels, predictions, labels=range(len(class_names)), target_names=list(class_names),
                                 output_dict=True, zero_division=0)


def study_figures(study: optuna.Study, names: tuple[str, ...] = ()) -> dict[str, object]:
    """Optuna's optimization history, parameter importances, parallel coordinates and slices; for a
    multi-objective study (objective `names`) the same on its first objective, and its Pareto front.

    Importances need at least two finished trials with varied params; a plot that cannot be drawn yet
    is left out rather than failing the sweep.
    """
    from optuna.visualization import matplotlib as views

    several = len(study.directions) > 1
    target = {"target": lambda t: t.values[0], "target_name": names[0]} if several else {}
    draws = [("optimization_history", views.plot_optimization_history),
             ("param_importances", views.plot_param_importances),
             ("parallel_coordinate", views.plot_parallel_coordinate), ("slice", views.plot_slice)]
    figures = {}
    # Each view sets the ggplot style process-wide: kept to these figures, not the user's own in a notebook.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        if several:
            draws.append(("pareto_front", lambda s: views.plot_pareto_front(s, target_names=list(names))))
        for name, draw in draws:
            try:
                axes = draw(study, **(target if name != "pareto_front" else {}))
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
            first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
            figure = first.get_figure()
            figure.set_size_inches(max(8, figure.get_figwidth()), max(5, figure.get_figheight()))
            figures[name] = figure
    return figures


def best_so_far_figure(verdict, metric: str):
    """Each finished trial's objective, the best so far, and the seed-noise band on the worse side of the best
    (a pipeline.verdict.Verdict: below it when higher is better, above it for a loss or an error)."""
    figure, axis = plt.subplots(figsize=(9, 4.5))
    numbers = np.arange(len(verdict.values))
    done = [(n, v) for n, v in zip(numbers, verdict.values) if v is not None]
    if done:
        axis.scatter(*zip(*done), s=14, color="tab:gray", alpha=0.6, label=f"trial {metric}")
    curve = np.array([np.nan if b is None else b for b in verdict.best_so_far], dtype=float)
    noise_sd = verdict.noise.sd
    axis.step(numbers, curve, where="post", color="tab:blue", label="best so far")
    if noise_sd:
        worse = curve - noise_sd if verdict.maximize else curve + noise_sd
        axis.fill_between(numbers, worse, curve, step="post", color="tab:blue", alpha=0.15,
                          label=f"seed noise ({noise_sd:.4f})")
    axis.set(xlabel="finished trial", ylabel=metric, title="Is the sweep done?")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right" if verdict.maximize else "upper right")
    figure.text(0.01, 0.01, verdict.text, fontsize=8, wrap=True)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def close(figure) -> None:
    plt.close(figure)
