"""The sweep loop: data once, then trials until the study's budget is spent, in one or several processes.

Several workers share the study through Optuna's own storage (a journal file or a database server) and
log through one MLflow server; no scheduler of our own. Faults are handled here: a failing trial is
recorded and the sweep goes on (up to `max_failures_in_a_row`), a tracking store that goes away stops
the sweep cleanly, Ctrl-C ends the current trial and run as KILLED/FAIL and reports what was done.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from pipeline import plots, processes, stores, tracking
from pipeline.config import SweepConfig, with_overrides
from pipeline.data import array_digest
from pipeline.errors import StudyError, SweepConfigError, TrackingError
from pipeline.objective import Objective, SurplusTrialError
from pipeline.preprocessing import prepare_variants
from pipeline.study import (COUNTED, EPOCHS_ATTR, ERROR_ATTR, SWEEP_FILE_ATTR, TEST_ACCURACY_ATTR, budget_left,
                            fail_dead_trials, finished_count, load_splits, open_study)
from pipeline.training import set_threads


@dataclass
class SweepOutcome:
    """What a `sweep run` did, for the summary table."""

    study_name: str
    storage: str
    tracking_uri: str
    parent_run_id: str | None
    new_trials: int
    finished_trials: int
    best: optuna.trial.FrozenTrial | None
    message: str = ""
    interrupted: bool = False


def run_sweep(config: SweepConfig, show_progress: bool = True, workers: int = 1) -> SweepOutcome:
    """Run (or resume) the sweep a config describes until its trial or time budget is spent."""
    if workers > 1:
        return _run_workers(config, workers, show_progress)
    set_threads(config.study.threads)
    variants, dataset = _load_data(config)
    tracker, study, before = _open(config)
    parent_id, message = _start(config, study, tracker)
    if parent_id is None:
        return _outcome(config, study, tracker, None, 0, message)
    objective = Objective(config, variants, tracker, parent_id, dataset)
    with _Progress(study, config, show_progress) as progress, tracking.parent_run_closer(parent_id) as closer:
        closer.interrupted = _loop(study, config, objective, [progress])
        _refresh_study_plots(study, parent_id)
    interrupted = closer.interrupted
    return _outcome(config, study, tracker, parent_id, len(study.trials) - before,
                    "interrupted: the current trial was marked FAIL" if interrupted else "", interrupted)


def _open(config: SweepConfig) -> tuple[tracking.Tracker, optuna.Study, int]:
    """The tracking store (refused early if unreachable), then the study with its dead trials failed."""
    tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
    study = open_study(config)
    fail_dead_trials(study)
    return tracker, study, len(study.trials)


def _start(config: SweepConfig, study: optuna.Study, tracker: tracking.Tracker) -> tuple[str | None, str]:
    """The parent run, or None and why when the study's budget is already spent."""
    n_left, time_left = budget_left(study, config)
    if n_left == 0 or (time_left is not None and time_left <= 0):
        return None, _spent_message(study, config, n_left)
    study.set_user_attr(SWEEP_FILE_ATTR, config.path.read_text())
    return tracking.open_parent_run(tracker, config.study.name, config.path, _settings(config)), ""


def _loop(study: optuna.Study, config: SweepConfig, objective: Objective, callbacks: list) -> bool:
    """One trial at a time until the budget is spent; True when interrupted by Ctrl-C."""
    guard = _FailureGuard(config.study.max_failures_in_a_row)
    callbacks = [*callbacks, _BestRecorder(objective.parent_id, config.study.metric), guard]
    try:
        while True:
            n_left, time_left = budget_left(study, config)
            if n_left == 0 or (time_left is not None and time_left <= 0):
                return False
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
            if isinstance(objective.last_error, SurplusTrialError):
                return False
            if isinstance(objective.last_error, TrackingError):
                raise TrackingError(f"{objective.last_error}; the sweep stopped, its finished trials are kept "
                                    "in the study: rerun the same command once the tracking store is back")
            guard.check()
    except KeyboardInterrupt:
        return True


class _FailureGuard:
    """Stops the sweep after too many failed trials in a row (a broken space, not bad luck)."""

    def __init__(self, limit: int):
        self.limit, self.in_a_row, self.last = limit, 0, ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        failed = trial.state == TrialState.FAIL
        self.in_a_row = self.in_a_row + 1 if failed else 0
        self.last = trial.user_attrs.get(ERROR_ATTR, "") if failed else self.last

    def check(self) -> None:
        if self.in_a_row >= self.limit:
            raise StudyError(f"{self.in_a_row} trials failed in a row (study.max_failures_in_a_row is "
                             f"{self.limit}); the last one: {self.last}")


class _BestRecorder:
    """Study callback: when a trial becomes the best so far, point the parent run at it."""

    def __init__(self, parent_id: str, metric: str):
        self.parent_id, self.metric = parent_id, metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            tracking.record_best(self.parent_id, self.metric, trial.number, trial.value,
                                 trial.user_attrs.get("mlflow_run_id"))


class _Progress:
    """A progress bar over the study's total trials, with one line per finished trial."""

    def __init__(self, study: optuna.Study, config: SweepConfig, enabled: bool):
        done = finished_count(study)
        self.metric = config.study.metric
        self.bar = tqdm(total=config.study.n_trials, initial=done, desc=config.study.name,
                        unit="trial", disable=not enabled, dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in COUNTED:
            self.bar.update(1)
        value = "" if trial.value is None else f" {self.metric}={trial.value:.4f}"
        test = trial.user_attrs.get(TEST_ACCURACY_ATTR)
        test_text = "" if test is None else f" test_accuracy={test:.4f}"
        error = f" error: {trial.user_attrs[ERROR_ATTR]}" if trial.state == TrialState.FAIL else ""
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        self.bar.write(f"trial {trial.number} {trial.state.name}{value}{test_text} "
                       f"epochs={trial.user_attrs.get(EPOCHS_ATTR, '-')} {params}{error}")
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self.bar.set_postfix({f"best {self.metric}": f"{study.best_value:.4f}"})


def _run_workers(config: SweepConfig, workers: int, show_progress: bool) -> SweepOutcome:
    """N processes on this machine share the study's storage; they log through one MLflow server."""
    if stores.is_sqlite(config.study.storage):
        raise SweepConfigError(f"{config.path}: --workers {workers} needs a study storage several processes can "
                               "share, not a SQLite file: use --storage journal:///mlruns/optuna.journal (this "
                               "machine) or --storage postgresql://... (several machines)")
    tracker, study, before = _open(config)
    parent_id, message = _start(config, study, tracker)
    if parent_id is None:
        return _outcome(config, study, tracker, None, 0, message)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with processes.shared_tracking_server(tracker.tracking_uri) as server_uri:
        worker_config = with_overrides(config, tracking_uri=server_uri)
        context = multiprocessing.get_context("spawn")
        pool = [context.Process(target=_worker, args=(worker_config, parent_id, threads)) for _ in range(workers)]
        for process in pool:
            process.start()
        with tracking.parent_run_closer(parent_id) as closer:
            closer.interrupted = _watch(study, config, pool, show_progress)
            _refresh_study_plots(study, parent_id)
    interrupted = closer.interrupted
    failed = [p.exitcode for p in pool if p.exitcode not in (0, None)]
    message = f"{len(failed)} of {workers} workers exited with an error (see above)" if failed else ""
    return _outcome(config, study, tracker, parent_id, len(study.trials) - before, message, interrupted)


def _refresh_study_plots(study: optuna.Study, parent_id: str) -> None:
    figures = plots.study_figures(study)
    tracking.log_study_figures(parent_id, figures)
    for figure in figures.values():
        plots.close(figure)


def _watch(study: optuna.Study, config: SweepConfig, pool: list, show_progress: bool) -> bool:
    """The progress bar of a multi-worker sweep, read from the shared storage until the workers end."""
    seen = {t.number for t in study.trials if t.state.is_finished()}
    with _Progress(study, config, show_progress) as progress:
        try:
            while any(p.is_alive() for p in pool):
                time.sleep(1.0)
                for trial in study.get_trials(deepcopy=False):
                    if trial.state.is_finished() and trial.number not in seen:
                        seen.add(trial.number)
                        progress(study, trial)
        except KeyboardInterrupt:
            for process in pool:
                process.join(timeout=30)
            return True
    return False


def _worker(config: SweepConfig, parent_id: str, threads: int) -> None:
    """One worker process: its own data and TensorFlow, the shared study, the parent's MLflow run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_threads(threads)
    variants, dataset = _load_data(config)
    tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
    study = open_study(config)
    if _loop(study, config, Objective(config, variants, tracker, parent_id, dataset), []):
        raise SystemExit(130)


def _load_data(config: SweepConfig):
    raw, splits = load_splits(config)
    variants = prepare_variants(config.preprocessing_methods(), splits)
    dataset = tracking.numpy_dataset(splits.x_train, splits.y_train, name=f"{config.data.dataset}-train",
                                     source=raw.source, digest=array_digest(splits.x_train, splits.y_train))
    return variants, dataset


def _settings(config: SweepConfig) -> dict:
    study = dataclasses.asdict(config.study)
    study.pop("name")
    return {**study, **{f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()}}


def _spent_message(study: optuna.Study, config: SweepConfig, n_left: int) -> str:
    finished = finished_count(study)
    if n_left == 0:
        return (f"study '{config.study.name}' already has {finished} finished trials of the "
                f"{config.study.n_trials} asked for; nothing to do (raise --n-trials to continue it)")
    return (f"study '{config.study.name}' has used its {config.study.timeout:.0f} s timeout; nothing to do "
            "(raise --timeout to continue it)")


def _outcome(config: SweepConfig, study: optuna.Study, tracker: tracking.Tracker, parent_id: str | None,
             new_trials: int, message: str = "", interrupted: bool = False) -> SweepOutcome:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return SweepOutcome(
        study_name=config.study.name, storage=stores.resolve_uri(config.study.storage),
        tracking_uri=tracker.tracking_uri, parent_run_id=parent_id, new_trials=new_trials,
        finished_trials=finished_count(study),
        best=max(complete, key=lambda t: t.value if study.direction.name == "MAXIMIZE" else -t.value)
        if complete else None, message=message, interrupted=interrupted)
