"""Median pruning keyed on the fraction of each trial's schedule, not on the absolute epoch.

Optuna's MedianPruner compares a trial at epoch k with the finished trials at epoch k. When the number of
epochs is searched and the learning rate follows a schedule (the default sweep's cosine), that is unfair to
long schedules: at epoch 5 a 10-epoch trial has annealed halfway and scores high, while a 40-epoch trial is
still near its peak learning rate and scores lower, so pruning at equal epochs cuts the long schedules that
end best and the search drifts toward short ones. This pruner compares a trial a quarter into its schedule
with the finished trials a quarter into theirs (their curves interpolated between epochs). Where every
trial has the same number of epochs it decides exactly as MedianPruner does (tests/test_pruning.py).
`study.pruner: {type: median, by: fraction}` selects it.
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline import keys


class FractionMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial whose best value so far is worse than the median of the COMPLETE trials' values at the
    same fraction of their schedules; not before `startup_trials` have completed, nor in its first
    `warmup_epochs` epochs (as MedianPruner with n_warmup_steps = warmup_epochs + 1)."""

    def __init__(self, startup_trials: int, warmup_epochs: int) -> None:
        self.startup_trials = startup_trials
        self.warmup_epochs = warmup_epochs

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        step = trial.last_step
        if not complete or len(complete) < self.startup_trials or step is None or step <= self.warmup_epochs:
            return False
        values = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
        if not values:
            return True
        fraction = Fraction(step, schedule_length(trial))  # exact: equal schedules compare at equal epochs
        others = [v for v in (value_at(t, fraction) for t in complete) if not math.isnan(v)]
        if not others:
            return False
        median = statistics.median(others)
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return max(values) < median
        return min(values) > median


def schedule_length(trial: FrozenTrial) -> int:
    """The epochs a trial was set to train: from the complete set of values it recorded as it began; a trial
    without them (added to the study by other means) is taken to have run its whole schedule."""
    epochs = trial.user_attrs.get(keys.PARAMS, {}).get("epochs") or trial.params.get("epochs")
    return int(epochs) if epochs else max(trial.intermediate_values, default=1)


def value_at(trial: FrozenTrial, fraction: Fraction) -> float:
    """A finished trial's intermediate value `fraction` of the way through its schedule, linear between the
    epochs either side; NaN where its curve does not reach (before its first epoch, after an early stop),
    as MedianPruner leaves out the trials that have no value at the epoch it compares."""
    curve = trial.intermediate_values
    position = fraction * schedule_length(trial)
    below = max((epoch for epoch in curve if epoch <= position), default=None)
    above = min((epoch for epoch in curve if epoch >= position), default=None)
    if below is None or above is None:
        return math.nan
    if above == below:
        return curve[below]
    share = float((position - below) / (above - below))
    return curve[below] + share * (curve[above] - curve[below])
