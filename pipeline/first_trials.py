"""A study's first trials: the configurations the sweep file names (`study.start_with`) and another study's best
(`study.warm_start`), queued before the sampler takes over.

A user who ran a similar study yesterday, on yesterday's data, should not start cold today: its best
configurations are today's first trials, and the sampler learns from how they do here. Values are taken only for
the parameters this space searches; one the space cannot give a trial (out of its range, not among its choices)
is refused, naming it, before anything is written. Optuna skips a configuration already queued or run, so a
resumed study, or several machines starting one, run each once.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from pipeline import keys, objectives, stores
from pipeline.config import SweepConfig
from pipeline.errors import BadInputError, SweepConfigError
from pipeline.hyperparameters import FixedParam, misfit
from pipeline.study import StudyNotFound, budget_left, load_existing_study


@dataclass(frozen=True)
class FirstTrials:
    configurations: tuple[dict, ...]  # searched name -> value, start_with's first, then the warm start's
    source: dict | None = None  # where a warm start came from: study, storage, and its trials taken
    notes: tuple[str, ...] = ()  # what the command should say (a warm start's parameters left to the sampler)


def plan(config: SweepConfig, existing: optuna.Study | None = None) -> FirstTrials:
    """The first trials the sweep file asks for; a warm start's study is read (never written) here.

    A warm start is decided once, when the study first runs: a study that `existing` shows has recorded one
    takes its configurations from that record when it resumes, so the source may since have changed, moved or
    gone, and a new best of it never lands in the middle of this study."""
    start_with = tuple(_searched(config, entry) for entry in config.study.start_with)
    warm = config.study.warm_start
    if warm is None:
        return FirstTrials(start_with)
    decided = existing.user_attrs.get(keys.WARM_START) if existing is not None else None
    if decided is not None:
        return FirstTrials(start_with + tuple(t["params"] for t in decided["trials"]), decided)
    storage = warm.storage or config.study.storage
    try:
        other = load_existing_study(storage, warm.study)
    except StudyNotFound as exc:
        raise BadInputError(f"{config.path}: study.warm_start: {exc}") from None
    best = _distinct(objectives.candidates(other))[:warm.top_k]
    taken = tuple(_taken(config, trial) for trial in best)
    source = {"study": warm.study, "storage": stores.printable(stores.resolve_uri(storage, create=False)),
              "top_k": warm.top_k, "trials": [{"number": t.number, "value": objectives.value(t),
                                               "params": values} for t, values in zip(best, taken)]}
    return FirstTrials(start_with + taken, source, _notes(config, warm.study, other, best))


def enqueue(study: optuna.Study, config: SweepConfig, first: FirstTrials) -> int:
    """Queue the first trials that fit the study's remaining budget; a warm start is recorded on the study.
    Returns how many configurations were new to it."""
    if first.source is not None:
        study.set_user_attr(keys.WARM_START, first.source)
    before = len(study.get_trials(deepcopy=False))
    n_left, _ = budget_left(study, config)
    for values in first.configurations[:n_left]:
        study.enqueue_trial(values, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before


def _searched(config: SweepConfig, entry) -> dict:
    """A start_with configuration without the names the space fixes (the file's check saw they agree)."""
    return {name: value for name, value in entry.items() if not isinstance(config.search_space[name], FixedParam)}


def _distinct(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The best trial of each configuration: a study that retried one (a confirmation's seeds do not count: they
    live in their own study) must not fill the warm start with copies."""
    seen, kept = set(), []
    for trial in trials:
        key = repr(sorted(trial.params.items()))
        if key not in seen:
            seen.add(key)
            kept.append(trial)
    return kept


def _taken(config: SweepConfig, trial: optuna.trial.FrozenTrial) -> dict:
    """The trial's values for the parameters this space searches (its fixed ones included: they are what it ran
    with); a value this space cannot give a trial is refused, naming the parameter."""
    values = trial.user_attrs.get(keys.PARAMS, trial.params)
    taken = {}
    for name in config.searched_names():
        if name not in values:
            continue
        reason = misfit(config.search_space[name], values[name])
        if reason:
            raise SweepConfigError(
                f"{config.path}: study.warm_start: trial {trial.number} of study '{config.study.warm_start.study}' "
                f"ran with {name}={values[name]!r}, which {reason} of search_space.{name}; widen "
                f"search_space.{name} to take it, or warm-start from a study whose space fits this one")
        taken[name] = values[name]
    return taken


def _notes(config: SweepConfig, name: str, other: optuna.Study, best: list) -> tuple[str, ...]:
    """What the user should know: a warm start with nothing to take, and the parameters left to the sampler."""
    if not best:
        return (f"study.warm_start: study '{name}' has no COMPLETE trial yet; this study starts cold",)
    searched_there = {n for t in other.get_trials(deepcopy=False) for n in t.params}
    sampled = [n for n in config.searched_names() if n not in best[0].user_attrs.get(keys.PARAMS, best[0].params)]
    dropped = sorted(searched_there - set(config.searched_names()))
    notes = [f"study.warm_start: the first {len(best)} trial(s) are the best of study '{name}' "
             f"(trials {', '.join(str(t.number) for t in best)})"]
    if sampled:
        notes.append(f"study.warm_start: study '{name}' had no {', '.join(sampled)}: the sampler chooses them")
    if dropped:
        notes.append(f"study.warm_start: study '{name}' also searched {', '.join(dropped)}, which this space does "
                     "not: left out")
    return tuple(notes)
