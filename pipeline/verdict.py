"""Is my sweep done? The best-so-far curve set against the seed noise, and a plain verdict.

The noise floor is the standard deviation of the objective between seeds of one configuration: taken
from the confirmation when there is one, else from trials that ran the same or nearly the same
configuration (numbers within 10 % of each other, the same choices), else unknown. An improvement of the
best counts only when it beats the best that counted before by more than that floor; the verdict says how
many trials have passed since the last one. Everything is in the objective's own units and direction:
val_accuracy in percentage points, a regression's val_rmse or val_mae in the label's units, lower being
better for a loss or an error. Where it can be wrong: the floor is an estimate from a few
seeds; a space whose better regions are rare can still improve after a long flat stretch; and a
sampler that has converged on one region says nothing about the regions it never tried.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Sequence

NEAR = 0.10  # numbers within 10 % of each other count as "nearly the same" configuration
MIN_TRIALS = 5
UNKNOWN_NOISE = "`sweep confirm` measures it"
POINTS = ("val_accuracy",)  # a fraction, its changes said in percentage points
LABEL_UNITS = ("val_rmse", "val_mae")  # a regression's errors, in the label's own units


@dataclass(frozen=True)
class Noise:
    sd: float | None  # in the objective's units; None when nothing could estimate it
    source: str  # how it was estimated, in words


@dataclass(frozen=True)
class Verdict:
    values: tuple[float | None, ...]  # the objective per finished trial, in order (None: pruned)
    best_so_far: tuple[float | None, ...]  # per finished trial, in order: the best objective up to it
    noise: Noise
    since_improvement: int  # finished trials since the best last rose by more than the noise
    window_gain: float  # how much the best improved (rose; fell, when minimized) over the last `window` trials
    window: int
    text: str
    metric: str = "val_accuracy"
    maximize: bool = True


def noise_from_seeds(groups: Sequence[Sequence[float]], source: str) -> Noise:
    """The pooled within-configuration standard deviation of groups of scores of one configuration each."""
    groups = [g for g in groups if len(g) > 1]
    if not groups:
        return Noise(None, "no configuration was trained more than once")
    dof = sum(len(g) - 1 for g in groups)
    pooled = sum(statistics.variance(g) * (len(g) - 1) for g in groups) / dof
    return Noise(math.sqrt(pooled), source)


def noise_from_neighbours(trials: Sequence[tuple[dict, float]]) -> Noise:
    """Groups of trials whose configurations are the same or nearly so (a crude floor, and said to be)."""
    groups: list[list[float]] = []
    used: set[int] = set()
    for i, j in itertools.combinations(range(len(trials)), 2):
        if i not in used and j not in used and _near(trials[i][0], trials[j][0]):
            groups.append([trials[i][1], trials[j][1]])
            used |= {i, j}
    return noise_from_seeds(groups, f"the spread of {len(groups)} pair(s) of repeated or near-identical "
                                    "configurations among the trials")


def judge(values: Sequence[float | None], noise: Noise, maximize: bool = True, metric: str = "val_accuracy"
          ) -> Verdict:
    """The verdict on a study's history: `values` is the objective `metric` per finished trial in order (None for
    a pruned or failed one), better higher when `maximize`, else lower."""
    sign = 1 if maximize else -1
    best: list[float | None] = []
    for value in values:
        previous = best[-1] if best else None
        best.append(value if previous is None or (value is not None and sign * value > sign * previous) else previous)
    floor = noise.sd or 0.0
    anchor, last = None, -1
    for index, value in enumerate(values):
        if value is not None and (anchor is None or sign * (value - anchor) > floor):
            anchor, last = value, index
    since = len(values) - 1 - last
    window = max(10, len(values) // 4)
    start = best[-window - 1] if len(best) > window else next((b for b in best if b is not None), None)
    gain = (best[-1] - start if maximize else start - best[-1]) if best and None not in (best[-1], start) else 0.0
    text = _text(len(values), since, gain, window, noise, metric, maximize, sum(v is not None for v in values))
    return Verdict(tuple(values), tuple(best), noise, since, gain, window, text, metric, maximize)


def _text(n: int, since: int, gain: float, window: int, noise: Noise, metric: str, maximize: bool,
          complete: int) -> str:
    best, unit = ("the best", _points) if metric in POINTS else (f"the best {metric}", _amount)
    moved = "rose" if maximize else "fell"
    if complete < MIN_TRIALS:
        return f"too early to tell: {complete} COMPLETE trial(s); the verdict needs {MIN_TRIALS}"
    if noise.sd is None:  # no floor: every improvement counts, and none can be told from luck
        if since >= window:
            return (f"{best} has not improved at all in the last {since} trials: more trials of this space are "
                    f"unlikely to help (the seed noise is unknown; {UNKNOWN_NOISE})")
        return (f"still improving: {best} {moved} {unit(gain)} in the last {min(window, n)} trials, last {since} "
                f"trial(s) ago; the seed noise is unknown, so some of that may be luck ({UNKNOWN_NOISE})")
    floor = f"±{unit(noise.sd)}"
    if since >= window:
        return (f"{best} has not improved by more than the seed noise ({floor}) in the last {since} trials: "
                "more trials of this space are unlikely to help")
    return (f"still improving: {best} {moved} {unit(gain)} in the last {min(window, n)} trials (seed noise "
            f"{floor}; last real improvement {since} trial(s) ago)")


def _points(x: float) -> str:
    return f"{100 * x:.2f} points"


def _amount(x: float) -> str:
    return f"{x:.4g}"


def units(metric: str, maximize: bool) -> str:
    """What the metric's figures are in, and which way is better, in words."""
    unit = ["in the label's units"] if metric in LABEL_UNITS else []
    return ", ".join([metric, *unit, f"{'higher' if maximize else 'lower'} is better"])


def _near(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, (int, float)) and not isinstance(x, bool) and isinstance(y, (int, float)):
            if abs(x - y) > NEAR * max(abs(x), abs(y)):
                return False
        elif x != y:
            return False
    return True


def describe(verdict: Verdict) -> str:
    """The verdict with the figures it rests on, as the parent run's verdict.txt and `sweep report` give it."""
    from pipeline import objectives
    noise = (f"unknown ({verdict.noise.source}; {UNKNOWN_NOISE})" if verdict.noise.sd is None
             else f"{verdict.noise.sd:.4f} (from {verdict.noise.source})")
    best = next((b for b in reversed(verdict.best_so_far) if b is not None), None)
    return "\n".join([
        f"verdict: {verdict.text}",
        f"  finished trials: {len(verdict.values)}; best so far: {'-' if best is None else objectives.shown(best)} "
        f"({units(verdict.metric, verdict.maximize)})",
        f"  seed noise (sd between seeds of one configuration): {noise}",
        f"  trials since the best last improved by more than the noise: {verdict.since_improvement}",
        f"  improvement of the best over the last {verdict.window} trials: {verdict.window_gain:.4f}",
    ])


def finished_trials(study) -> list:
    """The trials that count toward a study's history: COMPLETE and PRUNED, in order."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def for_study(study, confirmed: Sequence, metric: str) -> Verdict:
    """The verdict on an Optuna study of the objective `metric`, its noise floor from its confirmation
    (pipeline.confirmation's results) where there is one."""
    from optuna.trial import TrialState

    from pipeline import keys, objectives

    finished = finished_trials(study)
    if any(len(c.values) > 1 for c in confirmed):
        noise = noise_from_seeds([c.values for c in confirmed], "the confirmation's seeds")
    else:
        noise = noise_from_neighbours([(t.user_attrs.get(keys.PARAMS, t.params), objectives.value(t))
                                       for t in finished if t.state == TrialState.COMPLETE])
    counted = [objectives.value(t) if t.state == TrialState.COMPLETE and objectives.feasible(t) else None
               for t in finished]  # an infeasible trial cannot be the best
    return judge(counted, noise, objectives.maximizes(study), metric)
