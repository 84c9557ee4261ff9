"""`sweep compare A B`: two studies side by side, and whether their difference is larger than the noise.

Each side is its best configuration: the confirmed winner (mean ± sd over its seeds) where the study has
a confirmation, else its single best trial with the noise floor the verdict estimates. The difference of
the two objectives counts as real when it exceeds twice its standard error; with one seed a side, the
error comes from the noise floors, and the table says that the comparison is unconfirmed. Better is the
objective's direction (higher val_accuracy; lower val_loss, or a regression's lower val_rmse), and the
test row is the task's headline test metric; two studies that optimize or test different metrics (a
classification and a regression) are not compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from pipeline import confirmation, keys, objectives, tracking
from pipeline.config import SweepConfig
from pipeline.data.records import describe_folder
from pipeline.errors import BadInputError
from pipeline.study import best_complete_trial, load_existing_study
from pipeline.verdict import Noise, noise_from_neighbours, noise_from_seeds


@dataclass(frozen=True)
class Side:
    name: str
    metric: str  # the study's objective
    test_metric: str  # the task's headline test metric
    maximize: bool  # whether a higher objective is better
    trials: int  # finished (COMPLETE or PRUNED)
    wall_s: float  # from the first trial's start to the last one's end
    params: dict
    values: tuple[float, ...]  # the objective per seed of the chosen configuration
    tests: tuple[float, ...]
    confirmed: bool
    noise: Noise
    data: dict | None = None  # what the study recorded of its data (pipeline.keys.DATA): folder and digest

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def error(self) -> float | None:
        """The standard error of the mean objective."""
        if len(self.values) > 1:
            mean = self.mean
            return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1) / len(self.values))
        return self.noise.sd


def side(config: SweepConfig) -> Side:
    study = load_existing_study(config.study.storage, config.study.name)
    best = best_complete_trial(study)
    confirmed = confirmation.of_study(study, config, config.tracking.tracking_uri)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if confirmed:
        winner = confirmed[0]
        params, values, tests = winner.params, winner.values, winner.tests
        noise = noise_from_seeds([c.values for c in confirmed], "the confirmation's seeds")
    else:
        params, values = best.user_attrs[keys.PARAMS], (objectives.value(best),)
        tests = (tracking.test_metric(config.tracking.tracking_uri, best.user_attrs[keys.RUN_ID], config.test_metric),)
        noise = noise_from_neighbours([(t.user_attrs[keys.PARAMS], objectives.value(t)) for t in finished
                                       if t.state == TrialState.COMPLETE])
    return Side(config.study.name, config.study.metric, config.test_metric, objectives.maximizes(study), len(finished),
                _wall_seconds(finished), params, tuple(values), tuple(tests), bool(confirmed), noise,
                study.user_attrs.get(keys.DATA))


def check_comparable(a: SweepConfig, b: SweepConfig) -> None:
    """Scores of different metrics say nothing about which search is better: refused, naming both (bad input),
    from the sweep files alone, before either store is read."""
    for what, ours, theirs in (("optimizes", a.study.metric, b.study.metric),
                               ("tests on", a.test_metric, b.test_metric)):
        if ours != theirs:
            raise BadInputError(f"study '{a.study.name}' {what} {ours} but study '{b.study.name}' {what} {theirs}: "
                                "their scores cannot be compared; compare studies of one task and one study.metric")


def data_warning(a: Side, b: Side) -> str | None:
    """A line saying the two studies ran on different data (their recorded digests differ), or None: their
    scores then say nothing about which search is better, though the table is still shown."""
    if not (a.data and b.data) or a.data.get("digest") == b.data.get("digest"):
        return None
    ran = "; ".join(f"{s.name} on {describe_folder(s.data.get('data_dir'))} (digest {s.data.get('digest')})"
                    for s in (a, b))
    return f"the two studies ran on different data ({ran}): their scores are not comparable; compared anyway"


def render(a: Side, b: Side) -> str:
    rows = [("", a.name, b.name),
            ("chosen by", *(_chosen(s) for s in (a, b))),
            (f"{a.metric}", *(_spread(s.values) for s in (a, b))),
            (a.test_metric, *(_spread(s.tests) for s in (a, b))),
            ("finished trials", str(a.trials), str(b.trials)),
            ("wall time", *(f"{s.wall_s / 60:.1f} min" for s in (a, b))),
            ("seed noise", *(_noise(s.noise) for s in (a, b)))]
    rows += [(name, _value(a.params.get(name, "-")), _value(b.params.get(name, "-")))
             for name in dict.fromkeys([*a.params, *b.params])]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, width)).rstrip() for row in rows]
    return "\n".join([*lines, "", judgement(a, b)])


def judgement(a: Side, b: Side) -> str:
    diff = a.mean - b.mean
    errors = [s.error for s in (a, b)]
    if any(e is None for e in errors):
        return (f"{a.metric} differs by {diff:+.4f} ({a.name} - {b.name}); the seed noise is unknown, so it "
                "cannot be told from luck: run `sweep confirm` on both")
    error = math.sqrt(sum(e * e for e in errors))
    real = abs(diff) > 2 * error
    better = a.name if (diff > 0) == a.maximize else b.name
    verdict = (f"larger than the noise: {better} is better ({'higher' if a.maximize else 'lower'} {a.metric})"
               if real else "within the noise: neither is shown better")
    caveat = "" if a.confirmed and b.confirmed else " (unconfirmed: the error comes from noise floors)"
    return f"{a.metric} differs by {diff:+.4f} ({a.name} - {b.name}), standard error {error:.4f}: {verdict}{caveat}"


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _chosen(s: Side) -> str:
    return f"confirmed, {len(s.values)} seeds" if s.confirmed else "best single trial"


def _spread(values: tuple[float, ...]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "-"
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return f"{mean:.4f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    return f"{mean:.4f} ± {sd:.4f}"


def _noise(noise: Noise) -> str:
    return "unknown" if noise.sd is None else f"±{noise.sd:.4f} ({noise.source})"


def _wall_seconds(trials: list[optuna.trial.FrozenTrial]) -> float:
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
