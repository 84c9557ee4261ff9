"""The body of a worker process: the sweep's data loaded once, then trials until the study's budget (or,
confirming, the queue of retrainings) or this worker's share of `trials_per_process` is spent, a stop
signal arrives, or something stops the sweep.

Imported only inside a worker, after TensorFlow has been loaded quietly (pipeline.worker.main).
"""

from __future__ import annotations

import functools
import socket
import time

import optuna
from optuna.trial import TrialState

from pipeline import builders, confirmation, keys, objectives, storages, tracking
from pipeline.config import SweepConfig, with_overrides
from pipeline.data import Splits, load_splits, portable_folder
from pipeline.deferred import Deferred
from pipeline.families import FAMILIES
from pipeline.errors import StudyError, SweepConfigError, TrackingError
from pipeline.preprocessing import fit_stats
from pipeline.processes import StopRequest
from pipeline.study import (GRACE_S, SurplusTrialError, awaited, budget_spent, fail_dead_trials, failure_reason,
                            open_study, settled, storage_lost)
from pipeline.trial import TrialContext, run_retraining, run_trial
from pipeline.worker import Finished, LastTrial, Note, Ready, WorkerSpec


def serve(spec: WorkerSpec, connection, stop: StopRequest) -> Finished:
    """Data once, then trials until the study's budget or this worker's share is spent."""
    data = load_splits(spec.config.data, spec.config.study.seed, spec.workers)
    _check_family(spec.config, data)
    stats = fit_stats(data.x_train, data.fills_gaps, data.regression_targets)
    design = builders.design(spec.config)  # a user's builder is loaded and checked before anything is written
    if design.build is not None:
        builders.check(spec.config, design, data, stats)
    connection.send(Ready(portable_folder(spec.config.data.data_dir, spec.config.folder), data.train_digest(),
                          builders.record(spec.config)))
    tracking.prepare(spec.config.tracking.tracking_uri)  # while the supervisor opens the stores
    go = connection.recv()
    if go is None:
        return Finished("dismissed")
    config = with_overrides(spec.config, tracking_uri=go.tracking_uri)
    tracker = tracking.connect(go.tracking_uri, config.experiment_name)
    with Deferred() as after_trial:  # the worker says how it ended only once the last trial's model is logged
        context = TrialContext(config, data, stats, _dataset_record(config, data), tracker, go.parent_id, stop,
                               after_trial, design)
        with storage_lost(config.study.storage):
            return _run_phase(go.phase, spec.number, context, lambda: connection.send(LastTrial()),
                              lambda text: connection.send(Note(text)))


def _check_family(config: SweepConfig, data: Splits) -> None:
    """A family that cannot take this data (a cnn on an npz of flat features) is refused before the worker says
    Ready, so the supervisor opens no store."""
    family = FAMILIES.get(config.model.family)
    reason = family and family.refusal(data.inputs)
    if reason:
        raise SweepConfigError(f"{config.path}: model.family: {reason}")


def _run_phase(phase: str, number: int, context: TrialContext, announce_last, say) -> Finished:
    config, stop = context.config, context.stop
    if phase == "confirm":
        queue = confirmation.open_confirmation(config)
        return _run_trials(queue, config, functools.partial(run_retraining, context=context), stop,
                           lambda: confirmation.queue_empty(queue), announce_last)
    study = open_study(config, number)
    return _run_trials(study, config, functools.partial(run_trial, context=context), stop,
                       lambda: settled(study, config), announce_last,
                       [_BestRecorder(context.parent_id, config.study.metric)], _OthersAwaited(study, config, say))


def _run_trials(study: optuna.Study, config: SweepConfig, objective, stop: StopRequest, done, announce_last,
                callbacks: list = (), others_awaited=lambda: False) -> Finished:
    """One trial at a time until `done()` (the budget is spent, the queue empty) or this worker's share is;
    `announce_last()` as the share's last trial begins, so the supervisor can start the next worker.
    While the budget's last places are held by other processes' running trials, `others_awaited()` waits a
    little for them and says so; a place a dead one frees is run here.

    A trial's own failure (an exception, a NaN loss) is recorded by Optuna as FAIL and the loop goes on;
    losing the tracking store or too many failures in a row stop the sweep.
    """
    guard = _FailureGuard(config.study.max_failures_in_a_row)
    share, ran = config.study.trials_per_process, 0
    while True:
        stop.check()
        if done():
            return Finished("budget")
        if share and ran >= share:
            return Finished("share")
        if others_awaited():
            continue
        if share and ran == share - 1:
            announce_last()
        ran += 1
        try:
            study.optimize(objective, n_trials=1, catch=(), callbacks=list(callbacks))
        except SurplusTrialError:
            return Finished("budget")
        except TrackingError as exc:
            raise TrackingError(f"{exc}; the sweep stopped, its finished trials are kept in the study: "
                                "rerun the same command once the tracking store is back") from None
        except storages.FAILURES:
            raise  # the study's storage, not the trial, failed: pipeline.study.storage_lost says so
        except Exception as exc:  # the trial failed by itself; Optuna has recorded it as FAIL
            guard.failed(exc)
            continue
        guard.succeeded()


class _OthersAwaited:
    """The study's trials are all taken, but some only by other processes' running trials (study.awaited): this
    worker does not leave, or a machine that died in one of them would leave the study short for ever. It
    checks every POLL_S seconds, fails those whose process died (a heartbeat older than GRACE_S, or a pid
    gone from this machine) and then runs their places; the supervisor prints what it says."""

    POLL_S = 5

    def __init__(self, study: optuna.Study, config: SweepConfig, say):
        self.study, self.config, self.say = study, config, say
        self.told: set[int] = set()

    def __call__(self) -> bool:
        """Whether it waited (True: ask again), or nothing is awaited and the worker carries on."""
        if not budget_spent(self.study, self.config):
            return False
        held = [t for t in awaited(self.study, self.config) if t.number not in self.told]
        for trial in held:
            when = ("at once" if trial.user_attrs.get(keys.HOST) == socket.gethostname()
                    else f"{GRACE_S} s after its last heartbeat")
            self.say(f"waiting for trial {trial.number} of {_where(trial)}, one of the study's last, run by another "
                     f"sweep: if its process dies, the trial is failed {when} and run again here")
            self.told.add(trial.number)
        time.sleep(self.POLL_S)
        failed = set(fail_dead_trials(self.study))
        for trial in self.study.get_trials(deepcopy=False):
            if trial.number in failed:
                self.say(f"trial {trial.number} of {_where(trial)} was failed: {failure_reason(trial)}; "
                         "its place goes to a new trial")
        return True


def _where(trial: optuna.trial.FrozenTrial) -> str:
    return f"host {trial.user_attrs.get(keys.HOST, '?')} (pid {trial.user_attrs.get(keys.PID, '?')})"


class _FailureGuard:
    """Stops the sweep after too many failed trials in a row (a broken space, not bad luck)."""

    def __init__(self, limit: int):
        self.limit, self.in_a_row = limit, 0

    def failed(self, exc: Exception) -> None:
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            raise StudyError(f"{self.in_a_row} trials failed in a row (study.max_failures_in_a_row is "
                             f"{self.limit}); the last one: {type(exc).__name__}: {exc}")

    def succeeded(self) -> None:
        self.in_a_row = 0


class _BestRecorder:
    """Study callback: when a trial becomes the best so far, point the parent run at it."""

    def __init__(self, parent_id: str, metric: str):
        self.parent_id, self.metric = parent_id, metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = objectives.candidates(study)
        if trial.state == TrialState.COMPLETE and best and best[0].number == trial.number:
            tracking.record_best(self.parent_id, self.metric, trial.number, objectives.value(trial),
                                 trial.user_attrs.get(keys.RUN_ID))


def _dataset_record(config: SweepConfig, data: Splits):
    source = portable_folder(config.data.data_dir, config.folder) or data.source
    return tracking.numpy_dataset(data.x_train, data.y_train, name=f"{config.data.dataset}-train", source=source,
                                  digest=data.train_digest())
