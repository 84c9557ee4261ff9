"""Which trial a study ships: what `sweep export` exports and the Python API's `best()` names.

Where the study has a confirmation with several seeds a configuration (pipeline.confirmation), the winner is
the configuration with the best mean objective, and its model is that configuration's seed with the best
validation score; otherwise it is the single best COMPLETE trial. With export limits (latency, size), it is
the best trial whose model meets them. One module, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from pipeline import confirmation, keys, objectives
from pipeline.config import Constraints, SweepConfig
from pipeline.errors import BadInputError
from pipeline.study import best_complete_trial


@dataclass(frozen=True)
class Winner:
    """The search trial of the chosen configuration and the run whose model is shipped."""

    number: int  # the search trial (of the configuration)
    params: dict
    value: float  # the shipped model's own objective
    run_id: str  # the run whose model is shipped
    confirmed: confirmation.Confirmed | None = None


def winner(study: optuna.Study, config: SweepConfig, tracking_uri: str) -> Winner:
    """The confirmed configuration's best seed, else the best COMPLETE trial (StudyError when none is)."""
    confirmed = confirmation.of_study(study, config, tracking_uri)
    if confirmed and len(confirmed[0].values) > 1:
        first = confirmed[0]
        seed = first.best_seed
        return Winner(first.trial_number, first.params, first.values[seed], first.run_ids[seed], first)
    best = best_complete_trial(study)
    return Winner(best.number, best.user_attrs[keys.PARAMS], objectives.value(best), best.user_attrs[keys.RUN_ID])


def winner_within(study: optuna.Study, limits: Constraints) -> Winner:
    """The best trial by the study's objective (validation, in its direction) whose model meets the limits."""
    for trial in objectives.candidates(study):
        if objectives.within(trial, limits):
            return Winner(trial.number, trial.user_attrs[keys.PARAMS], objectives.value(trial),
                          trial.user_attrs[keys.RUN_ID])
    closest = objectives.closest(objectives.candidates(study), limits)
    near = (f"; the closest is trial {closest.number} ({objectives.describe(closest.user_attrs[keys.MEASUREMENTS])})"
            if closest else " (none of its trials was measured: they predate the measurements)")
    wanted = ", ".join(f"{key} <= {value:g}" for key, value in limits.limits().items())
    raise BadInputError(f"no COMPLETE trial of study '{study.study_name}' meets {wanted}{near}; loosen the limits "
                        "or search smaller models")
