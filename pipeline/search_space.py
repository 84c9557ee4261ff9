"""The search space: the only place that calls `trial.suggest_*`.

A trial's values are the sweep's fixed values overlaid with what the sampler suggests, so every trial
carries every hyperparameter and the best one can be rebuilt from its stored values alone.
"""

from __future__ import annotations

import optuna

from pipeline.config import SweepConfig
from pipeline.param_specs import CategoricalParam, FixedParam, FloatParam, IntParam, ParamSpec
from pipeline.hyperparameters import Hyperparameters

PARAMS_ATTR = "hyperparameters"


def suggest_params(trial: optuna.Trial, config: SweepConfig) -> Hyperparameters:
    """Ask the sampler for each searched value; record the complete set on the trial."""
    values = config.fixed_params()
    for name, spec in config.search_space.items():
        if not isinstance(spec, FixedParam):
            values[name] = suggest_value(trial, name, spec)
    params = Hyperparameters.from_dict(values)
    trial.set_user_attr(PARAMS_ATTR, params.as_dict())
    return params


def suggest_value(trial: optuna.Trial, name: str, spec: ParamSpec):
    if isinstance(spec, IntParam):
        return trial.suggest_int(name, spec.low, spec.high, step=spec.step, log=spec.log)
    if isinstance(spec, FloatParam):
        return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
    if isinstance(spec, CategoricalParam):
        return trial.suggest_categorical(name, list(spec.choices))
    raise TypeError(f"{name}: a fixed value is not suggested")


def params_of(trial: optuna.trial.FrozenTrial) -> Hyperparameters:
    """The complete hyperparameters a finished trial trained with."""
    return Hyperparameters.from_dict(trial.user_attrs[PARAMS_ATTR])
