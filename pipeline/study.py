"""The study runner: data once, then per trial params -> model -> fit/evaluate -> tracking -> objective.

The study lives in persistent storage and is resumed by name; `n_trials` and `timeout` are totals for
the study, so rerunning a finished sweep does nothing and says so.
"""

from __future__ import annotations

import dataclasses
import resource
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from pipeline import search_space, stores, tracking
from pipeline.config import PrunerConfig, SweepConfig, parse_sweep_text
from pipeline.errors import StudyError
from pipeline.data import array_digest, load_fashion_mnist, split_data
from pipeline.model import build_model
from pipeline.preprocessing import PreparedData, prepare_variants
from pipeline.training import set_threads, start_fresh, train_and_evaluate

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
SWEEP_FILE_ATTR = "sweep_file"
RUN_ID_ATTR, TEST_ACCURACY_ATTR, TEST_LOSS_ATTR, EPOCHS_ATTR = (
    "mlflow_run_id", "test_accuracy", "test_loss", "epochs_run")


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


def run_sweep(config: SweepConfig, show_progress: bool = True) -> SweepOutcome:
    """Run (or resume) the sweep a config describes until its trial or time budget is spent."""
    set_threads(config.study.threads)
    variants, dataset = _load_data(config)
    tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
    study = open_study(config)
    n_left, time_left = budget_left(study, config)
    if n_left == 0 or (time_left is not None and time_left <= 0):
        return _outcome(config, study, tracker, None, 0, _spent_message(study, config, n_left))
    parent_id = tracking.open_parent_run(tracker, config.study.name, config.path, _settings(config))
    study.set_user_attr(SWEEP_FILE_ATTR, config.path.read_text())
    objective = Objective(config, variants, tracker, parent_id, dataset)
    before = len(study.trials)
    with _Progress(study, config, show_progress) as progress:
        interrupted = True
        try:
            study.optimize(objective, n_trials=n_left, timeout=time_left,
                           callbacks=[progress, _BestRecorder(parent_id, config.study.metric)])
            interrupted = False
        finally:
            tracking.close_parent_run(parent_id, interrupted)
    return _outcome(config, study, tracker, parent_id, len(study.trials) - before)


def open_study(config: SweepConfig) -> optuna.Study:
    """Create or resume the named study; refuse one whose direction differs from the sweep file."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = stores.resolve_uri(config.study.storage)
    study = optuna.create_study(storage=storage, study_name=config.study.name, load_if_exists=True,
                                direction=config.study.direction, pruner=make_pruner(config.study.pruner))
    if study.direction.name.lower() != config.study.direction:
        raise StudyError(f"study '{config.study.name}' in {storage} was created to "
                         f"{study.direction.name.lower()}, but {config.path} asks to {config.study.direction}")
    # Offsetting the seed by the trials already run keeps a resumed study from replaying its first picks.
    study.sampler = make_sampler(config.study.sampler, config.study.seed + len(study.trials))
    return study


def load_existing_study(storage: str, name: str) -> optuna.Study:
    """A study that must already exist; otherwise StudyError listing the studies that do."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = stores.resolve_uri(storage, create=False)
    if stores.is_sqlite(storage) and not stores.sqlite_path(storage).is_file():
        raise StudyError(f"no study storage at {storage}; run `sweep run` first")
    names = optuna.get_all_study_names(storage)
    if name not in names:
        raise StudyError(f"no study named '{name}' in {storage}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def load_study_config(storage: str, name: str) -> SweepConfig:
    """The sweep file a study was last run with (stored on the study), for commands given --study NAME."""
    study = load_existing_study(storage, name)
    text = study.user_attrs.get(SWEEP_FILE_ATTR)
    if text is None:
        raise StudyError(f"study '{name}' in {storage} was not created by `sweep run`; pass its sweep file")
    config = parse_sweep_text(text, Path(f"<sweep file of study '{name}'>"))
    return dataclasses.replace(config, study=dataclasses.replace(config.study, storage=storage))


def best_complete_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best COMPLETE trial by the study's own objective (validation, never test)."""
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        raise StudyError(f"study '{study.study_name}' has no COMPLETE trial yet "
                         f"({len(study.trials)} trials in other states); run the sweep first")
    return study.best_trial


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(pruner: PrunerConfig) -> optuna.pruners.BasePruner:
    """Median by default; its warm-up keeps the first trials and epochs from being cut on noise."""
    if pruner.type == "median":
        # Steps are 1-based epochs and Optuna prunes from step == n_warmup_steps on, hence the + 1.
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials,
                                           n_warmup_steps=pruner.warmup_epochs + 1)
    if pruner.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if pruner.type == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def budget_left(study: optuna.Study, config: SweepConfig) -> tuple[int, float | None]:
    """Trials and seconds still owed to the study's totals, counting what earlier runs spent."""
    finished = sum(t.state in COUNTED for t in study.trials)
    n_left = max(config.study.n_trials - finished, 0)
    if config.study.timeout is None:
        return n_left, None
    spent = sum((t.datetime_complete - t.datetime_start).total_seconds()
                for t in study.trials if t.datetime_complete and t.datetime_start)
    return n_left, config.study.timeout - spent


class Objective:
    """One trial: suggest, build, train, log, and return the validation metric."""

    def __init__(self, config: SweepConfig, variants: dict[str, PreparedData],
                 tracker: tracking.Tracker, parent_id: str, dataset):
        self.config, self.variants, self.tracker = config, variants, tracker
        self.parent_id, self.dataset = parent_id, dataset

    def __call__(self, trial: optuna.Trial) -> float:
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
            result = train_and_evaluate(model, data, params, hooks=[run.log_epoch, _pruning_hook(trial, metric)])
            run.log_results({"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
                             "epochs_run": result.epochs_run, "peak_rss_mb": _peak_rss_mb()})
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


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far; flat across trials means nothing leaks between them."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pruning_hook(trial: optuna.Trial, metric: str):
    def report(epoch: int, logs: dict) -> bool:
        trial.report(logs[metric], step=epoch)
        return bool(trial.should_prune())
    return report


class _BestRecorder:
    """Study callback: when a trial becomes the best so far, point the parent run at it."""

    def __init__(self, parent_id: str, metric: str):
        self.parent_id, self.metric = parent_id, metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            tracking.record_best(self.parent_id, self.metric, trial.number, trial.value,
                                 trial.user_attrs.get(RUN_ID_ATTR))


class _Progress:
    """A progress bar over the study's total trials, usable as a study callback."""

    def __init__(self, study: optuna.Study, config: SweepConfig, enabled: bool):
        done = sum(t.state in COUNTED for t in study.trials)
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
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        self.bar.write(f"trial {trial.number} {trial.state.name}{value}{test_text} "
                       f"epochs={trial.user_attrs.get(EPOCHS_ATTR, '-')} {params}")
        if any(t.state == TrialState.COMPLETE for t in study.trials):
            self.bar.set_postfix({f"best {self.metric}": f"{study.best_value:.4f}"})


def _load_data(config: SweepConfig):
    raw = load_fashion_mnist(config.data.data_dir)
    splits = split_data(raw, config.data.validation_fraction, config.study.seed,
                        config.data.subset, config.data.test_subset)
    variants = prepare_variants(config.preprocessing_methods(), splits)
    dataset = tracking.numpy_dataset(splits.x_train, splits.y_train, name=f"{config.data.dataset}-train",
                                     source=raw.source, digest=array_digest(splits.x_train, splits.y_train))
    return variants, dataset


def _settings(config: SweepConfig) -> dict:
    study = dataclasses.asdict(config.study)
    study.pop("name")
    return {**study, **{f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()}}


def _spent_message(study: optuna.Study, config: SweepConfig, n_left: int) -> str:
    finished = sum(t.state in COUNTED for t in study.trials)
    if n_left == 0:
        return (f"study '{config.study.name}' already has {finished} finished trials of the "
                f"{config.study.n_trials} asked for; nothing to do (raise --n-trials to continue it)")
    return (f"study '{config.study.name}' has used its {config.study.timeout:.0f} s timeout; nothing to do "
            "(raise --timeout to continue it)")


def _outcome(config: SweepConfig, study: optuna.Study, tracker: tracking.Tracker, parent_id: str | None,
             new_trials: int, message: str = "") -> SweepOutcome:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return SweepOutcome(
        study_name=config.study.name, storage=stores.resolve_uri(config.study.storage),
        tracking_uri=tracker.tracking_uri, parent_run_id=parent_id, new_trials=new_trials,
        finished_trials=sum(t.state in COUNTED for t in study.trials),
        best=study.best_trial if complete else None, message=message)
