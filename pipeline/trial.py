"""One trial: params -> model (its preprocessing inside) -> fit -> MLflow record -> objective value.

Runs only inside a worker process, on data loaded once per process. Each trial starts from a cleared
Keras session and its own seed. Its failures propagate: Optuna records the trial as FAIL, and the
worker's loop decides what the failure means for the sweep.
"""

from __future__ import annotations

import contextlib
import functools
import resource
from dataclasses import dataclass
from pathlib import Path

import optuna

from pipeline import confirmation, keys, plots, tracking
from pipeline.config import QUANTITIES, Constraints, SweepConfig
from pipeline.data import Splits
from pipeline.deferred import Deferred
from pipeline.errors import TrackingError
from pipeline.hyperparameters import Hyperparameters, suggest_params
from pipeline.measure import measure
from pipeline.model import Design, build_model
from pipeline.preprocessing import FeatureStats
from pipeline.processes import StopRequest
from pipeline.study import SurplusTrialError, claim_trial, refuse_surplus
from pipeline.tasks import TASKS
from pipeline.tracking import models
from pipeline.training import TrainResult, start_fresh, train_and_evaluate


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a worker shares: the sweep, its data (raw, with the training statistics),
    where to record, and the worker's stop request."""

    config: SweepConfig
    data: Splits
    stats: FeatureStats
    dataset: object  # the MLflow dataset record of the training split
    tracker: tracking.Tracker
    parent_id: str
    stop: StopRequest
    after_trial: Deferred  # plots and model logging, off the critical path
    design: Design = Design()  # the model's family (or the user's builder) and task


def run_trial(trial: optuna.Trial, context: TrialContext) -> float:
    """Optuna's objective. Why a trial failed is kept on it, for the summary and `sweep report`."""
    try:
        return _run(trial, context)
    except optuna.TrialPruned:
        raise
    except BaseException as exc:
        trial.set_user_attr(keys.ERROR, f"{type(exc).__name__}: {exc}"[:1000].rstrip(": "))
        raise


def _run(trial: optuna.Trial, context: TrialContext) -> float:
    config = context.config
    claim_trial(trial)
    refuse_surplus(trial, config.study.n_trials)
    context.after_trial.check()
    params = suggest_params(trial, config.search_space)
    logged = params.used(context.design.family, context.design.task)  # not the cnn's values on a dense trial
    trial.set_user_attr(keys.PARAMS, logged)
    start_fresh(config.study.seed + trial.number)
    with tracking.trial_run(context.tracker, context.parent_id, config.study.name, config.storage_identity,
                            trial.number, logged) as run:
        trial.set_user_attr(keys.RUN_ID, run.run_id)
        # Optuna takes no intermediate values from a multi-objective trial (and cannot prune it).
        prune = None if config.study.objectives else pruning_hook(trial, config.study.metric)
        result, measured = _train_and_record(run, params, context, prune)
        _record_costs(trial, run, measured, config.study.constraints)
    if result.stopped_early:
        raise optuna.TrialPruned(f"pruned after epoch {result.epochs_run}")
    costs = [measured[QUANTITIES[name][0]] for name in config.study.objectives[1:]]
    return (result.final(config.study.metric), *costs) if costs else result.final(config.study.metric)


def _record_costs(trial: optuna.Trial, run: tracking.RunRecorder, measured: dict, constraints: Constraints) -> None:
    """The measurements on the trial and, with constraints, how far the model misses each limit, as the
    trial's Optuna constraints (the sampler reads them) and as a feasible tag on its run."""
    trial.set_user_attr(keys.MEASUREMENTS, measured)
    if constraints:
        excess = constraints.excess(measured)
        for name, value in excess.items():
            trial.set_constraint(name, value)
        run.tag(keys.FEASIBLE, str(all(e <= 0 for e in excess.values())).lower())


def run_retraining(trial: optuna.Trial, context: TrialContext) -> float:
    """Optuna's objective for a confirmation: a queued configuration trained in full with its own seed."""
    claim_trial(trial)
    if not confirmation.is_planned(trial):
        raise SurplusTrialError(f"retraining {trial.number} was not queued (the queue ran dry meanwhile)")
    config, attrs = context.config, trial.user_attrs
    params = Hyperparameters.from_dict(attrs[keys.PARAMS])
    start_fresh(attrs[keys.SEED])
    with tracking.retraining_run(context.tracker, context.parent_id, config.study.name, config.storage_identity,
                                 attrs, params.used(context.design.family, context.design.task)) as run:
        trial.set_user_attr(keys.RUN_ID, run.run_id)
        result, _ = _train_and_record(run, params, context)
    return result.final(config.study.metric)


def _train_and_record(run: tracking.RunRecorder, params: Hyperparameters, context: TrialContext,
                      prune=None) -> tuple[TrainResult, dict]:
    """Build, train, score and measure one model, logging its curves, results and costs; its plots and
    (unless pruned) the model are logged in the background while the next trial trains."""
    data = context.data
    run.log_dataset(context.dataset)
    if context.config.builder_path is not None:  # the user's network is this file: kept with the model it built
        run.log_file(context.config.builder_path, keys.BUILDER_DIR)
    design = context.design
    model = build_model(params, data.inputs, len(data.class_names), context.stats, design)
    hooks = [run.log_epoch, *([prune] if prune else []), context.stop.check]
    best_by = (context.config.study.metric, context.config.directions[0] == "maximize")
    result = train_and_evaluate(model, data, params, hooks=hooks, best_by=best_by, task=design.task,
                                stats=context.stats)
    measured = measure(model, data.x_val[:256])
    kept = {keys.KEPT_EPOCH: result.kept_epoch} if result.kept_epoch else {}
    run.log_results({**result.test_metrics, keys.EPOCHS_RUN: result.epochs_run, keys.PEAK_RSS_MB: _peak_rss_mb(),
                     **kept, **measured})
    if result.stopped_early:
        run.state = "PRUNED"
    context.after_trial.submit(functools.partial(_log_artifacts, run, result, data, TASKS[design.task],
                                                 None if result.stopped_early else model))
    return result, measured


def _log_artifacts(run: tracking.RunRecorder, result: TrainResult, data: Splits, task, model) -> None:
    """Curves, the task's plots and report, and the model (None: pruned, not kept). Runs on the background
    thread, after the run has ended; a failure to log stops the sweep like any store failure."""
    try:
        _log_plots(run, result, data, task)
        if model is not None:
            models.log_model(model, data.x_val[:5], data.class_names, run_id=run.run_id)
    except tracking.STORE_ERRORS as exc:
        raise TrackingError(f"cannot log the plots and model of run {run.run_id}: {exc}") from exc


def _log_plots(run: tracking.RunRecorder, result: TrainResult, data: Splits, task) -> None:
    """Curves, the task's plots (a confusion matrix; predicted against actual) and its report: drawn once per
    trial, after training."""
    for name, figure in (("learning_curves", plots.learning_curves(result.history)),
                         *task.figures(data.y_test, result.test_outputs, data.class_names)):
        run.log_figure(figure, name)
        plots.close(figure)
    run.log_report(task.report(data.y_test, result.test_outputs, data.class_names), task.REPORT)


def pruning_hook(trial: optuna.Trial, metric: str):
    """Report the epoch's validation metric; ask the pruner whether to stop."""
    def report(epoch: int, logs: dict) -> bool:
        trial.report(logs[metric], step=epoch)
        return bool(trial.should_prune())
    return report


def _peak_rss_mb() -> float:
    """Peak resident memory of this worker so far; flat across its trials means nothing leaks."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
