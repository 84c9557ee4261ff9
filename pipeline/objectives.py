"""What a trial is judged on: its validation metric, and what shipping its model costs.

Every trial measures its served model (pipeline.measure): parameters, saved size, and prediction
latency. A sweep file can cap those (`study.constraints`: the study stays single-objective, so pruning
still works, and Optuna's TPE sampler learns to avoid infeasible regions) or optimize them too
(`study.objectives`: a multi-objective Optuna study and its Pareto front). Either way an infeasible trial
never wins, is never confirmed and never exported.

The measurements are kept on each Optuna trial, with how far they miss each limit as Optuna's own trial
constraints (which its samplers read), and logged as the trial run's metrics (for the MLflow UI).
"""

from __future__ import annotations

from typing import Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline import keys
from pipeline.config import Constraints

def value(trial: FrozenTrial) -> float | None:
    """The objective that chooses (the validation metric; the first of several objectives)."""
    return trial.values[0] if trial.values else None


def maximizes(study: optuna.Study) -> bool:
    return study.directions[0] == StudyDirection.MAXIMIZE


def feasible(trial: FrozenTrial) -> bool:
    """Met every constraint of its study (a trial of a study without constraints always has)."""
    return all(excess <= 0 for excess in trial.constraints.values())


def candidates(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE, feasible trials, best first by the choosing objective."""
    sign = -1 if maximizes(study) else 1
    found = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if feasible(t)]
    return sorted(found, key=lambda t: (sign * value(t), t.number))


def pareto_front(points: Sequence[tuple[int, Sequence[float]]], maximize: Sequence[bool]) -> list[int]:
    """The numbers of the points no other point dominates (at least as good in every objective, better in one)."""
    signed = [(n, [v if up else -v for v, up in zip(values, maximize)]) for n, values in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [n for n, v in signed if not any(dominates(w, v) for m, w in signed if m != n)]


def study_front(study: optuna.Study) -> list[FrozenTrial]:
    """A multi-objective study's feasible COMPLETE trials on the Pareto front, best first objective first."""
    trials = candidates(study)
    front = set(pareto_front([(t.number, t.values) for t in trials],
                             [d == StudyDirection.MAXIMIZE for d in study.directions]))
    return [t for t in trials if t.number in front]


def within(trial: FrozenTrial, limits: Constraints) -> bool:
    measured = trial.user_attrs.get(keys.MEASUREMENTS)
    return measured is not None and all(e <= 0 for e in limits.excess(measured).values())


def closest(trials: Sequence[FrozenTrial], limits: Constraints) -> FrozenTrial | None:
    """The measured trial that misses the limits by least (the largest relative excess, smallest first)."""
    measured = [t for t in trials if t.user_attrs.get(keys.MEASUREMENTS)]
    return min(measured, key=lambda t: max(limits.excess(t.user_attrs[keys.MEASUREMENTS]).values()), default=None)


def describe(measured: dict) -> str:
    return (f"{measured[keys.PARAMS_COUNT]:,} params, {measured[keys.MODEL_MB]:.3f} MB, "
            f"{measured[keys.LATENCY_B1]:.3f} ms per image at batch 1")


def shown(value: float) -> str:
    """A metric's value as summaries print it: four decimals (an accuracy, a loss, an error of tens), or four
    significant digits where decimals would hide it (a regression's error in small or huge units: 1.541e-06,
    not 0.0000)."""
    return f"{value:.4f}" if value == 0 or 1e-2 <= abs(value) < 1e6 else f"{value:.4g}"
