"""study.n_trials and study.timeout for `sweep init`, from one timed epoch of the search space's middle model
on this machine: a budget guessed without timing is hours off between a laptop and a GPU. TensorFlow is loaded
only when an epoch is timed, so `sweep init --no-timing` starts quickly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from pipeline.config import SweepConfig
from pipeline.data import Splits
from pipeline.hyperparameters import CategoricalParam, FixedParam, FloatParam, Hyperparameters, IntParam, base_values

TRIALS = 20  # the most trials written; also the untimed default
TIMED_ROWS = 2000  # the timed epoch trains on at most this many rows, scaled to the whole training split
TRIAL_OVERHEAD_S = 5  # a trial's cost besides its epochs: a fresh session, its model and plots logged
MAX_BUDGET_S = 4 * 3600  # a longer estimate gets fewer trials rather than a longer timeout


@dataclass(frozen=True)
class Budget:
    """study.n_trials and study.timeout, and how they were sized."""

    n_trials: int
    timeout: int
    comment: str


def timed_budget(config: SweepConfig, splits: Splits) -> Budget:
    """n_trials and timeout from one timed epoch of the file's middle model, scaled to the training split."""
    params = _middle_params(config)
    epoch_s = _timed_epoch(config, splits, params)
    trial_s = epoch_s * params.epochs + TRIAL_OVERHEAD_S
    trials = min(TRIALS, max(5, int(MAX_BUDGET_S // trial_s)))
    minutes = trials * trial_s / 60
    timeout = 60 * math.ceil(minutes * 1.25)
    rows = len(splits.y_train)
    timed = f", timed on {TIMED_ROWS}" if rows > TIMED_ROWS else ""
    comment = (f"one epoch of the default model took {epoch_s:.2g} s on this machine ({rows} training rows{timed}); "
               f"{trials} trials of ~{params.epochs} epochs ≈ {minutes:.0f} minutes")
    return Budget(trials, timeout, comment)


def _middle_params(config: SweepConfig) -> Hyperparameters:
    """The model in the middle of the search space: each range's middle (geometric for log), each choice's
    middle entry, the fixed values."""
    values = base_values(config.search_space)
    for name, spec in config.search_space.items():
        if isinstance(spec, CategoricalParam):
            values[name] = spec.choices[len(spec.choices) // 2]
        elif isinstance(spec, (IntParam, FloatParam)):
            middle = math.sqrt(spec.low * spec.high) if spec.log else (spec.low + spec.high) / 2
            values[name] = round(middle) if isinstance(spec, IntParam) else middle
        elif not isinstance(spec, FixedParam):
            raise TypeError(f"unknown search-space entry {spec!r}")
    return Hyperparameters.from_dict(values)


def _timed_epoch(config: SweepConfig, splits: Splits, params: Hyperparameters) -> float:
    """Seconds for one epoch over the whole training split, built and trained as a trial is. An epoch costs a
    fixed part (Keras' per-epoch work, the validation pass's start) and a part per row; with more rows than
    TIMED_ROWS both are measured, on TIMED_ROWS rows and on a quarter of them, and scaled to the split."""
    from pipeline.tensorflow_setup import load_tensorflow

    load_tensorflow()
    from pipeline.model import Design, build_model
    from pipeline.preprocessing import fit_stats
    from pipeline.training import start_fresh

    rows = min(len(splits.y_train), TIMED_ROWS)
    stats = fit_stats(splits.x_train[:rows], splits.fills_gaps, splits.regression_targets)
    start_fresh(config.study.seed)
    model = build_model(params, splits.inputs, len(splits.class_names), stats, Design(config.model.family, config.task))
    seconds = _timed_epochs(model, _miniature(splits, rows), params, config, stats)
    if rows == len(splits.y_train):
        return seconds
    quarter = _timed_epochs(model, _miniature(splits, rows // 4), params, config, stats)
    per_row = (seconds - quarter) / (rows - rows // 4)
    if per_row <= 0:  # too noisy to tell the parts apart: all of it per row, an overestimate
        return seconds * len(splits.y_train) / rows
    return seconds - per_row * rows + per_row * len(splits.y_train)


def _miniature(splits: Splits, rows: int) -> Splits:
    """The first `rows` training rows, with validation rows in the split's proportion and a few test rows."""
    validation = max(1, round(rows * len(splits.y_val) / len(splits.y_train)))
    return dataclasses.replace(splits, x_train=splits.x_train[:rows], y_train=splits.y_train[:rows],
                               x_val=splits.x_val[:validation], y_val=splits.y_val[:validation],
                               x_test=splits.x_test[:64], y_test=splits.y_test[:64])


def _timed_epochs(model, part: Splits, params: Hyperparameters, config: SweepConfig, stats) -> float:
    """The seconds of an epoch on `part` once traced (the first epoch traces the training and validation
    steps): the fastest of the next three, as other work on the machine only ever slows one down."""
    from pipeline.training import train_and_evaluate

    ends: list[float] = []
    train_and_evaluate(model, part, params.replace(epochs=4), hooks=[lambda *_: ends.append(time.perf_counter())],
                       best_by=(config.study.metric, config.directions[0] == "maximize"), task=config.task,
                       stats=stats)
    return min(np.diff(ends))
