"""Confirmation: the top K configurations retrained with R seeds, so that the winner is chosen by its mean.

Why: the same configuration scores differently with another seed (0.859 to 0.883 test accuracy on
Fashion-MNIST, bench row a), so the single best trial of a search is partly luck, and its score is
optimistic (the winner's curse). Confirmation retrains the K best COMPLETE trials, ranked by the study's
objective (validation) in its direction, R - 1 more times each with other seeds (the trial itself is the
first seed), and picks the configuration with the best mean validation score. The test set is still only
reported, in the task's headline test metric (test_accuracy; a regression's test_rmse, in the label's units).

The retrainings are trials of a second Optuna study, `<study>:confirm`, in the same storage: each is
enqueued with its configuration and seed, so workers (on one machine or several) take them from Optuna's
queue, a retraining finished is never run again, and an interrupted confirmation resumes where it stood.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from pipeline import keys, objectives, tracking
from pipeline.config import SweepConfig
from pipeline.errors import BadInputError
from pipeline.study import best_complete_trial, describe_complete, optuna_storage, storage_errors

SUFFIX = ":confirm"
SEED_STRIDE = 100_003  # repeat r of trial n trains with seed study.seed + n + r * SEED_STRIDE (r = 0: the trial)


@dataclass(frozen=True)
class Retraining:
    """One more training of a search trial's configuration with another seed."""

    trial_number: int
    repeat: int  # 1 .. seeds - 1; repeat 0 is the search trial itself
    seed: int
    params: dict
    source_run_id: str

    def attrs(self) -> dict:
        return {keys.SOURCE_TRIAL: self.trial_number, keys.REPEAT: self.repeat, keys.SEED: self.seed,
                keys.PARAMS: self.params, keys.SOURCE_RUN_ID: self.source_run_id}


@dataclass(frozen=True)
class Confirmed:
    """One configuration's scores over its seeds: the objective (validation) and the headline test metric."""

    trial_number: int
    params: dict
    values: tuple[float, ...]  # the objective per seed, the search trial's first
    tests: tuple[float, ...]  # the task's headline test metric per seed, in the same order
    run_ids: tuple[str, ...]
    maximize: bool = True  # the study's direction: whether a higher objective is better

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def test_mean(self) -> float:
        return statistics.fmean(self.tests) if self.tests else math.nan

    @property
    def test_std(self) -> float:
        return statistics.stdev(self.tests) if len(self.tests) > 1 else 0.0

    @property
    def best_seed(self) -> int:
        """The index of the seed whose model scored best on validation (in the study's direction): the one an
        export ships."""
        return (max if self.maximize else min)(range(len(self.values)), key=lambda i: self.values[i])


def study_name(name: str) -> str:
    return f"{name}{SUFFIX}"


def top_trials(study: optuna.Study, top_k: int) -> list[optuna.trial.FrozenTrial]:
    """The K best COMPLETE trials by the study's objective; refused when the study has fewer."""
    complete = objectives.candidates(study)
    if top_k > len(complete):
        raise BadInputError(f"study '{study.study_name}' has {describe_complete(study)}; cannot confirm the top "
                            f"{top_k}: lower --top-k (study.confirm.top_k) or run more trials first")
    return complete[:top_k]


def plan(study: optuna.Study, config: SweepConfig, top_k: int, seeds: int) -> list[Retraining]:
    """Every retraining the confirmation needs, whether done already or not."""
    return [Retraining(trial.number, repeat, config.study.seed + trial.number + repeat * SEED_STRIDE,
                       trial.user_attrs[keys.PARAMS], trial.user_attrs.get(keys.RUN_ID, ""))
            for trial in top_trials(study, top_k) for repeat in range(1, seeds)]


def open_confirmation(config: SweepConfig) -> optuna.Study:
    """The study holding the retrainings: no pruning (every seed trains in full), no sampling (all enqueued)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with storage_errors(config.study.storage):
        return optuna.create_study(storage=optuna_storage(config.study.storage), load_if_exists=True,
                                   study_name=study_name(config.study.name), direction=config.study.direction,
                                   pruner=optuna.pruners.NopPruner())


def enqueue_missing(confirmation: optuna.Study, retrainings: list[Retraining]) -> int:
    """Queue the retrainings that are neither done, queued nor running; return how many were queued."""
    held = {_key(t.user_attrs) for t in confirmation.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING))}
    missing = [r for r in retrainings if (r.trial_number, r.repeat) not in held]
    for retraining in missing:
        confirmation.enqueue_trial({}, user_attrs=retraining.attrs())
    return len(missing)


def queue_empty(confirmation: optuna.Study) -> bool:
    return not confirmation.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def is_planned(trial: optuna.Trial) -> bool:
    """A trial taken from the queue; one a worker started as the queue ran dry has no configuration."""
    return keys.SOURCE_TRIAL in trial.user_attrs


def find(storage: str, name: str) -> optuna.Study | None:
    """The study's confirmation, if one was ever planned."""
    backend = optuna_storage(storage)
    with storage_errors(storage):
        if study_name(name) not in optuna.get_all_study_names(backend):
            return None
        return optuna.load_study(study_name=study_name(name), storage=backend)


def of_study(study: optuna.Study, config: SweepConfig, tracking_uri: str) -> list[Confirmed]:
    """The study's confirmation, if it has one, with each seed's headline test metric read from MLflow."""
    return results(study, find(config.study.storage, config.study.name),
                   lambda run_id: tracking.test_metric(tracking_uri, run_id, config.test_metric))


def results(study: optuna.Study, confirmation: optuna.Study | None, test_of: Callable[[str], float]) -> list[Confirmed]:
    """Each configuration the confirmation planned, with the seeds finished so far, best mean first."""
    planned = confirmation.get_trials(deepcopy=False) if confirmation is not None else []
    numbers = sorted({t.user_attrs[keys.SOURCE_TRIAL] for t in planned if keys.SOURCE_TRIAL in t.user_attrs})
    done = sorted(((_key(t.user_attrs), t) for t in planned if t.state == TrialState.COMPLETE), key=lambda p: p[0])
    confirmed, maximize = [], objectives.maximizes(study)
    for number in numbers:
        trial = study.trials[number]
        runs = [(objectives.value(trial), trial.user_attrs.get(keys.RUN_ID, ""))]
        runs += [(t.value, t.user_attrs.get(keys.RUN_ID, "")) for (n, _), t in done if n == number]
        confirmed.append(Confirmed(number, trial.user_attrs[keys.PARAMS], tuple(v for v, _ in runs),
                                   tuple(test_of(run_id) for _, run_id in runs), tuple(r for _, r in runs), maximize))
    return rank(confirmed, maximize)


def rank(confirmed: list[Confirmed], maximize: bool = True) -> list[Confirmed]:
    """Best mean objective first; on a tie, the smaller spread, then the earlier trial."""
    sign = -1 if maximize else 1
    return sorted(confirmed, key=lambda c: (sign * c.mean, c.std, c.trial_number))


def table(confirmed: list[Confirmed], metric: str, test_metric: str = keys.TEST_ACCURACY) -> str:
    """The confirmation as a Markdown table, the winner first; `metric` is the study's, `test_metric` the task's
    headline."""
    lines = [f"| rank | trial | seeds | {metric} mean ± sd | {test_metric} mean ± sd | params |",
             "| --- | --- | --- | --- | --- | --- |"]
    for rank_, c in enumerate(confirmed, start=1):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.params.items())
        lines.append(f"| {rank_} | {c.trial_number} | {len(c.values)} | {c.mean:.4f} ± {c.std:.4f} | "
                     f"{c.test_mean:.4f} ± {c.test_std:.4f} | {params} |")
    return "\n".join(lines)


def raw_winner_differs(study: optuna.Study, confirmed: list[Confirmed]) -> bool:
    """Whether the confirmed choice is another configuration than the single best trial."""
    return bool(confirmed) and confirmed[0].trial_number != best_complete_trial(study).number


def _key(attrs: dict) -> tuple[int, int]:
    return attrs.get(keys.SOURCE_TRIAL, -1), attrs.get(keys.REPEAT, -1)
