"""The progress of a sweep, read from the study's storage: one bar over its total trials and one line
per finished trial, whichever worker (or machine) ran it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from pipeline import keys, objectives, tracking
from pipeline.config import SweepConfig
from pipeline.study import finished_count, is_surplus


class Progress:
    """A progress bar over the study's total trials, with one line per finished trial, read from storage."""

    def __init__(self, study: optuna.Study, config: SweepConfig, tracking_uri: str, enabled: bool,
                 total: int | None = None, desc: str | None = None):
        """`total` and `desc` default to the search's; a confirmation counts its retrainings instead, and
        shows no best (one seed's luck is what it is there to discount)."""
        self.study, self.metric, self.tracking_uri = study, config.study.metric, tracking_uri
        self.test_metric = config.test_metric
        self.best: float | None = None
        self.show_best = total is None
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.bar = tqdm(total=config.study.n_trials if total is None else total, initial=finished_count(study),
                        desc=desc or config.study.name, unit="trial", disable=not enabled, dynamic_ncols=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def write(self, line: str) -> None:
        self.bar.write(line)

    def update(self) -> None:
        study = self.study
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in self.seen:
                self.seen.add(trial.number)
                self._report(trial)
        best = objectives.candidates(study) if self.show_best else []
        if best:
            if objectives.value(best[0]) != self.best:
                self.best = objectives.value(best[0])
                self.bar.set_postfix({f"best {self.metric}": f"{self.best:.4f}"})

    def _report(self, trial: optuna.trial.FrozenTrial) -> None:
        if is_surplus(trial):
            return
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.bar.update(1)
        run_id = trial.user_attrs.get(keys.RUN_ID)
        results = tracking.run_metrics(self.tracking_uri, run_id) if run_id else {}
        self.bar.write(format_trial_line(trial, self.metric, results, self.test_metric))


def format_trial_line(trial: optuna.trial.FrozenTrial, metric: str, results: dict, test_metric: str) -> str:
    """`trial 3 PRUNED val_accuracy=0.8812 test_accuracy=0.8790 units=256 ... epochs=4/30 ...` (a regression:
    `val_rmse=53.2100 test_rmse=55.0200 ...`, in the label's units): the study's metric, the task's headline test
    metric, the parameters; a trial that stopped early shows the epochs it ran out of those it asked for."""
    parts = [f"trial {trial.number} {trial.state.name}"]
    if keys.SOURCE_TRIAL in trial.user_attrs:  # a confirmation's retraining: name the trial it repeats
        parts = [f"trial {trial.user_attrs[keys.SOURCE_TRIAL]} seed {trial.user_attrs[keys.REPEAT] + 1} "
                 f"{trial.state.name}"]
    if objectives.value(trial) is not None:
        parts.append(f"{metric}={objectives.shown(objectives.value(trial))}")
    if test_metric in results:
        parts.append(f"{test_metric}={objectives.shown(results[test_metric])}")
    params = dict(trial.user_attrs.get(keys.PARAMS, trial.params))
    ran = len(trial.intermediate_values)
    if "epochs" in params and ran and ran != params["epochs"]:  # retrainings and multi-objective trials report none
        params["epochs"] = f"{ran}/{params['epochs']}"
    parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    if trial.state == TrialState.FAIL:
        parts.append(f"error: {trial.user_attrs.get(keys.ERROR, 'unknown')}")
    return " ".join(parts)
