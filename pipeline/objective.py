"""One trial: suggest params, build the model, train, log everything to MLflow, return the objective.

Data arrives prepared (once per sweep); each trial starts from a cleared Keras session and its own seed.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

import optuna

from pipeline import plots, processes, search_space, tracking
from pipeline.config import SweepConfig
from pipeline.errors import SweepError
from pipeline.model import build_model
from pipeline.preprocessing import PreparedData
from pipeline.study import COUNTED, EPOCHS_ATTR, ERROR_ATTR, RUN_ID_ATTR, TEST_ACCURACY_ATTR, TEST_LOSS_ATTR, claim_trial
from pipeline.training import start_fresh, train_and_evaluate


class SurplusTrialError(SweepError):
    """Another worker took the study's last trial at the same moment; this one must not run."""


class Objective:
    """Called by Optuna once per trial; remembers the last error so the runner can decide what it means."""

    def __init__(self, config: SweepConfig, variants: dict[str, PreparedData],
                 tracker: tracking.Tracker, parent_id: str, dataset):
        self.config, self.variants, self.tracker = config, variants, tracker
        self.parent_id, self.dataset = parent_id, dataset
        self.last_error: BaseException | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_error = None
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:
            self.last_error = exc
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:1000])
            raise

    def _run(self, trial: optuna.Trial) -> float:
        claim_trial(trial)
        _refuse_surplus(trial, self.config.study.n_trials)
        params = search_space.suggest_params(trial, self.config)
        start_fresh(self.config.study.seed + trial.number)
        data = self.variants[params.preprocessing]
        metric = self.config.study.metric
        with tracking.trial_run(self.tracker, self.parent_id, self.config.study.name, trial.number,
                                params.as_dict()) as run:
            trial.set_user_attr(RUN_ID_ATTR, run.run_id)
            run.log_dataset(self.dataset)
            run.log_preprocessing(data.scaler.as_dict())
            model = build_model(params)
            hooks = [run.log_epoch, pruning_hook(trial, metric), _stop_on_ctrl_c]
            result = train_and_evaluate(model, data, params, hooks=hooks)
            run.log_results({"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
                             "epochs_run": result.epochs_run, "peak_rss_mb": _peak_rss_mb()})
            _log_plots(run, result, data.y_test)
            if result.stopped_early:
                run.state = "PRUNED"
            else:
                run.log_model(model, data.x_val[:5])
        for key, value in ((TEST_ACCURACY_ATTR, result.test_accuracy), (TEST_LOSS_ATTR, result.test_loss),
                           (EPOCHS_ATTR, result.epochs_run)):
            trial.set_user_attr(key, value)
        if result.stopped_early:
            raise optuna.TrialPruned(f"pruned after epoch {result.epochs_run}")
        return result.last(metric)


def _log_plots(run: tracking.TrialRecorder, result, labels) -> None:
    """Curves, confusion matrix and per-class report: drawn once per trial, after training."""
    for name, figure in (("learning_curves", plots.learning_curves(result.history)),
                         ("confusion_matrix", plots.confusion_figure(labels, result.test_predictions))):
        run.log_figure(figure, name)
        plots.close(figure)
    run.log_report(plots.class_report(labels, result.test_predictions))


def pruning_hook(trial: optuna.Trial, metric: str):
    """Report the epoch's validation metric; ask the pruner whether to stop."""
    def report(epoch: int, logs: dict) -> bool:
        trial.report(logs[metric], step=epoch)
        return bool(trial.should_prune())
    return report


def _stop_on_ctrl_c(epoch: int, logs: dict) -> bool:
    """A Ctrl-C that Python swallowed mid-epoch still ends the trial, at the epoch's end."""
    processes.raise_if_ctrl_c()
    return False


def _refuse_surplus(trial: optuna.Trial, n_trials: int) -> None:
    """Workers check the budget before asking for a trial; two asking at once can overshoot it by one."""
    earlier = trial.study.get_trials(deepcopy=False, states=(*COUNTED, optuna.trial.TrialState.RUNNING))
    if sum(t.number < trial.number for t in earlier) >= n_trials:
        raise SurplusTrialError(f"trial {trial.number} is beyond the study's {n_trials} trials")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image so far; flat across trials means nothing leaks.

    Linux's VmHWM starts again when `sweep run` replaces itself (getrusage's maxrss carries the old
    image's peak over exec); elsewhere getrusage is the best there is.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
