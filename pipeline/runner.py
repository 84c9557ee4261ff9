"""The sweep loop: data once, then trials until the study's budget is spent, in one or several processes.

Several workers share the study through Optuna's own storage (a journal file or a database server) and
log through one MLflow server; no scheduler of our own. Faults are handled here: a failing trial is
recorded and the sweep goes on (up to `max_failures_in_a_row`), a tracking store that goes away stops
the sweep cleanly, Ctrl-C ends the current trial and run as KILLED/FAIL and reports what was done.

Memory: TensorFlow keeps a few MiB of traced graphs per trained model that nothing frees in-process
(tensorflow/tensorflow#61791), so a process that has run `study.trials_per_process` trials hands the
study over to a fresh one: `sweep run` replaces itself (exec, same pid and arguments, the study resumes
where it stood) and a worker process exits and is replaced.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import NoReturn

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from pipeline import plots, processes, stores, tracking
from pipeline.config import SweepConfig, with_overrides
from pipeline.data import array_digest
from pipeline.errors import StudyError, SweepConfigError, TrackingError
from pipeline.objective import Objective, SurplusTrialError
from pipeline.preprocessing import prepare_variants
from pipeline.study import (COUNTED, EPOCHS_ATTR, ERROR_ATTR, RUN_ID_ATTR, SWEEP_FILE_ATTR, TEST_ACCURACY_ATTR,
                            best_complete_trial, budget_left, fail_dead_trials, finished_count, load_splits,
                            open_study)
from pipeline.training import set_threads

EXIT_RECYCLE = 75  # a worker that ran its trials_per_process; its parent starts a fresh one
TRIALS_BEFORE_ENV = "SWEEP_TRIALS_BEFORE"  # carried over exec, so the summary counts the whole command


class Stop(enum.Enum):
    """Why a process's trial loop ended."""

    DONE = "the study's budget is spent"
    INTERRUPTED = "Ctrl-C"
    RECYCLE = "this process ran its trials_per_process"


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
    trials_before: int = 0
    recycle: bool = False


def run_sweep(config: SweepConfig, show_progress: bool = True, workers: int = 1,
              may_recycle: bool = False) -> SweepOutcome:
    """Run (or resume) the sweep a config describes until its trial or time budget is spent.

    With `may_recycle` (the caller owns the process, as `sweep run` does) the sweep stops after
    `study.trials_per_process` trials with `outcome.recycle` set: call `continue_in_fresh_process`.
    """
    if workers > 1:
        return _run_workers(config, workers, show_progress)
    set_threads(config.study.threads)
    variants, dataset = _load_data(config)
    tracker, study, before = _open(config)
    parent_id, message = _start(config, study, tracker)
    if parent_id is None:
        return _outcome(config, study, tracker, None, before, message)
    objective = Objective(config, variants, tracker, parent_id, dataset)
    limit = config.study.trials_per_process if may_recycle else 0
    with (_Progress(study, config, show_progress) as progress, tracking.parent_run_closer(parent_id) as closer,
          processes.ctrl_c_remembered()):
        stop = _loop(study, config, objective, [progress], limit)
        closer.interrupted, closer.handed_over = stop is Stop.INTERRUPTED, stop is Stop.RECYCLE
        if stop is not Stop.RECYCLE:
            _refresh_study_plots(study, parent_id)
    interrupted = stop is Stop.INTERRUPTED
    outcome = _outcome(config, study, tracker, parent_id, before,
                       "interrupted: the current trial was marked FAIL" if interrupted else "", interrupted)
    return dataclasses.replace(outcome, recycle=stop is Stop.RECYCLE)


def continue_in_fresh_process(outcome: SweepOutcome) -> NoReturn:
    """Replace this process with the same `sweep run` command, which resumes the study."""
    os.environ[TRIALS_BEFORE_ENV] = str(outcome.trials_before)
    processes.replace_process()


def _open(config: SweepConfig) -> tuple[tracking.Tracker, optuna.Study, int]:
    """The tracking store (refused early if unreachable), then the study with its dead trials failed."""
    tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
    study = open_study(config)
    fail_dead_trials(study)
    return tracker, study, int(os.environ.pop(TRIALS_BEFORE_ENV, len(study.trials)))


def _start(config: SweepConfig, study: optuna.Study, tracker: tracking.Tracker) -> tuple[str | None, str]:
    """The parent run, or None and why when the study's budget is already spent."""
    budget = budget_left(study, config)
    if _spent(*budget):
        return None, _spent_message(study, config, budget[0])
    study.set_user_attr(SWEEP_FILE_ATTR, config.path.read_text())
    return tracking.open_parent_run(tracker, config.study.name, config.path, _settings(config)), ""


def _loop(study: optuna.Study, config: SweepConfig, objective: Objective, callbacks: list,
          trials_per_process: int = 0) -> Stop:
    """One trial at a time until the budget is spent, Ctrl-C, or this process's share of trials is run."""
    guard = _FailureGuard(config.study.max_failures_in_a_row)
    callbacks = [*callbacks, _BestRecorder(objective.parent_id, config.study.metric), guard]
    try:
        for ran in itertools.count():
            processes.raise_if_ctrl_c()
            if _spent(*budget_left(study, config)):
                return Stop.DONE
            if trials_per_process and ran >= trials_per_process:
                return Stop.RECYCLE
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
            if isinstance(objective.last_error, SurplusTrialError):
                return Stop.DONE
            if isinstance(objective.last_error, TrackingError):
                raise TrackingError(f"{objective.last_error}; the sweep stopped, its finished trials are kept "
                                    "in the study: rerun the same command once the tracking store is back")
            guard.check()
    except KeyboardInterrupt:
        return Stop.INTERRUPTED


def _spent(n_left: int, time_left: float | None) -> bool:
    return n_left == 0 or (time_left is not None and time_left <= 0)


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
                                 trial.user_attrs.get(RUN_ID_ATTR))


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
        return _outcome(config, study, tracker, None, before, message)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with processes.shared_tracking_server(tracker.tracking_uri) as server_uri:
        worker_config = with_overrides(config, tracking_uri=server_uri)
        context = multiprocessing.get_context("spawn")

        def start_worker() -> multiprocessing.Process:
            process = context.Process(target=_worker, args=(worker_config, parent_id, threads))
            process.start()
            return process

        pool = [start_worker() for _ in range(workers)]
        with tracking.parent_run_closer(parent_id) as closer:
            closer.interrupted = _watch(study, config, pool, start_worker, show_progress)
            _refresh_study_plots(study, parent_id)
    interrupted = closer.interrupted
    failed = [p.exitcode for p in pool if p.exitcode not in (0, None)]
    message = f"{len(failed)} of {workers} workers exited with an error (see above)" if failed else ""
    return _outcome(config, study, tracker, parent_id, before, message, interrupted)


def _refresh_study_plots(study: optuna.Study, parent_id: str) -> None:
    figures = plots.study_figures(study)
    tracking.log_study_figures(parent_id, figures)
    for figure in figures.values():
        plots.close(figure)


def _watch(study: optuna.Study, config: SweepConfig, pool: list, start_worker, show_progress: bool) -> bool:
    """The progress bar of a multi-worker sweep, read from the shared storage until the workers end.

    A worker that exits with EXIT_RECYCLE is replaced in `pool` by a fresh one from `start_worker`.
    """
    seen = {t.number for t in study.trials if t.state.is_finished()}
    with _Progress(study, config, show_progress) as progress:
        try:
            while any(p.is_alive() or p.exitcode == EXIT_RECYCLE for p in pool):
                time.sleep(1.0)
                pool[:] = [start_worker() if p.exitcode == EXIT_RECYCLE else p for p in pool]
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
    with processes.ctrl_c_remembered():
        stop = _loop(study, config, Objective(config, variants, tracker, parent_id, dataset), [],
                     config.study.trials_per_process)
    if stop is not Stop.DONE:
        raise SystemExit(130 if stop is Stop.INTERRUPTED else EXIT_RECYCLE)


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
             trials_before: int, message: str = "", interrupted: bool = False) -> SweepOutcome:
    """What the command did; `trials_before` is the study's size when the command (not this process) began."""
    has_complete = any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    return SweepOutcome(
        study_name=config.study.name, storage=stores.resolve_uri(config.study.storage),
        tracking_uri=tracker.tracking_uri, parent_run_id=parent_id, new_trials=len(study.trials) - trials_before,
        finished_trials=finished_count(study), best=best_complete_trial(study) if has_complete else None,
        message=message, interrupted=interrupted, trials_before=trials_before)
