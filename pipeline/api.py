"""The Python API: what the `sweep` commands call and what a notebook or script calls, one way to do each thing.

    from pipeline import Sweep

    sweep = Sweep.from_file("sweeps/smoke.yaml", data_dir="data/fashion-mnist")
    sweep.run()                      # the study, every trial an MLflow run; a progress bar that fits Jupyter
    sweep.trials()                   # a DataFrame: the columns of `sweep report --format csv`
    model = sweep.load_model()       # the best trial's Keras model: raw images in, class probabilities out

Errors are pipeline.errors types, the ones the CLI turns into exit statuses (SweepConfigError naming the key,
DataError, StudyError, ...), never SystemExit. A stop signal (Ctrl-C, a notebook's interrupt button) ends the
workers' trials FAIL and their runs KILLED, and then raises SweepInterrupted. Nothing heavy loads on import:
Optuna and MLflow load when a method needs them, and TensorFlow, quietly, only in the worker processes and for
load_model() and export().
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import numbers
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pipeline.config import (DEFAULT_STORAGE, DEFAULT_TRACKING_URI, TASK_TEST_METRICS, SweepConfig, check_data_source,
                             check_run, export_limits, load_sweep, parse_sweep_dict, with_confirm, with_overrides)
from pipeline.errors import BadInputError, SweepConfigError, SweepError, SweepInterrupted

if TYPE_CHECKING:
    import keras
    import optuna
    import pandas as pd

    from pipeline.compare import Side
    from pipeline.confirmation import Confirmed
    from pipeline.data import Splits
    from pipeline.report import ConfirmationOutcome, SweepOutcome
    from pipeline.scaffold import Scaffold


class Sweep:
    """One study and its tracking experiment, as a sweep file (or dict, or a study's stored copy) describes them.

    Build it with `from_file`, `from_dict` or `from_study`; the overrides are the command line's (`n_trials`,
    `timeout`, `data_dir`, `storage`, `tracking_uri`) and `workers` the worker processes `run` and `confirm` use.
    """

    def __init__(self, config: SweepConfig, workers: int = 1, verbose: bool = False, data_given: bool = False):
        """`data_given`: the data folder was named now (data_dir=...), so export uses it instead of the one the
        study recorded; `verbose` shows TensorFlow's own start-up lines."""
        if not isinstance(workers, int) or isinstance(workers, bool):
            raise SweepConfigError(f"--workers: must be a whole number, got {workers!r}")
        if workers < 1:
            raise SweepConfigError(f"--workers: must be at least 1, got {workers}")
        self.config, self.workers, self.verbose, self.data_given = config, workers, verbose, data_given
        quiet_libraries()

    @classmethod
    def from_file(cls, path: str | Path, *, n_trials: int | None = None, timeout: float | None = None,
                  data_dir: str | Path | None = None, storage: str | None = None, tracking_uri: str | None = None,
                  workers: int = 1, verbose: bool = False) -> "Sweep":
        """A sweep file, or a shipped example's name (`"smoke"`), with the command line's overrides."""
        return cls._made(load_sweep(path), n_trials, timeout, data_dir, storage, tracking_uri, workers, verbose)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, n_trials: int | None = None, timeout: float | None = None,
                  data_dir: str | Path | None = None, storage: str | None = None, tracking_uri: str | None = None,
                  workers: int = 1, verbose: bool = False) -> "Sweep":
        """A sweep as a dict of a file's sections (`{"study": {"name": ...}, "search_space": {...}}`), validated
        as a file is; relative paths in it are the current folder's. The study keeps it as YAML."""
        return cls._made(parse_sweep_dict(spec), n_trials, timeout, data_dir, storage, tracking_uri, workers, verbose)

    @classmethod
    def from_study(cls, name: str, *, storage: str | None = None, tracking_uri: str | None = None,
                   data_dir: str | Path | None = None, workers: int = 1, verbose: bool = False) -> "Sweep":
        """A study that has run, by its name in `storage`, with the sweep file it keeps (no file needed)."""
        from pipeline.study import load_study_config

        if not isinstance(name, str) or not name.strip():
            raise BadInputError(f"study name: must be a non-empty string, got {name!r}")
        config = load_study_config(storage or DEFAULT_STORAGE, name)
        return cls._made(config, None, None, data_dir, storage, tracking_uri, workers, verbose)

    @classmethod
    def _made(cls, config: SweepConfig, n_trials, timeout, data_dir, storage, tracking_uri, workers: int,
              verbose: bool) -> "Sweep":
        # A data folder given now is the current folder's, wherever the sweep file lies.
        folder = os.path.abspath(data_dir) if isinstance(data_dir, (str, Path)) and str(data_dir).strip() else data_dir
        config = with_overrides(config, n_trials=n_trials, timeout=timeout, storage=storage, tracking_uri=tracking_uri,
                                data_dir=folder)
        check_data_source(config)
        return cls(config, workers, verbose, data_given=data_dir is not None)

    @property
    def name(self) -> str:
        return self.config.study.name

    def __repr__(self) -> str:
        return (f"Sweep({self.name!r}, storage={self.config.study.storage!r}, "
                f"tracking_uri={self.config.tracking.tracking_uri!r}, workers={self.workers})")

    def run(self, progress: bool = True) -> "SweepOutcome":
        """Run (or resume) the study until its trial or time budget is spent, then the confirmation the sweep
        asks for (study.confirm). Returns what was done; printing it gives `sweep run`'s summary."""
        check_run(self.config, self.workers)

        def supervise(pool):
            from pipeline.supervisor import run_sweep  # once the workers are starting: ~3 s of imports overlap theirs

            return run_sweep(self.config, pool, show_progress=progress)

        outcome = self._in_pool(self.config, supervise)
        from pipeline.report import format_summary

        outcome = dataclasses.replace(outcome, summary=format_summary(outcome, self.config))
        if outcome.stopped_by:
            raise SweepInterrupted(outcome, outcome.stopped_by, outcome.message)
        if self.config.study.confirm:
            try:
                outcome = dataclasses.replace(outcome, confirmation=self.confirm(progress=progress))
            except SweepInterrupted as stopped:
                stopped.outcome = dataclasses.replace(outcome, confirmation=stopped.outcome)
                raise
            except KeyboardInterrupt:  # while the confirmation's workers started: the search's outcome still stands
                raise SweepInterrupted(outcome, signal.SIGINT, "interrupted before the confirmation started: the "
                                       "search is complete, the confirmation not begun") from None
        return outcome

    def confirm(self, top_k: int | None = None, seeds: int | None = None, progress: bool = True
                ) -> "ConfirmationOutcome":
        """Retrain the `top_k` best configurations with `seeds` seeds each (the search trial is one; defaults:
        study.confirm's, else 3 and 3), resuming an earlier confirmation. Printing it gives its table."""
        config = with_confirm(self.config, top_k, seeds)
        check_run(config, self.workers)

        def supervise(pool):
            from pipeline.supervisor import run_confirmation  # once the workers are starting, as in `run`

            return run_confirmation(config, pool, show_progress=progress)

        outcome = self._in_pool(config, supervise)
        from pipeline.report import format_confirmation
        from pipeline.worker_pool import STOP_SIGNALS

        outcome = dataclasses.replace(outcome, summary=format_confirmation(outcome, config))
        if outcome.stopped_by:
            raise SweepInterrupted(outcome, outcome.stopped_by, f"interrupted ({STOP_SIGNALS[outcome.stopped_by]}): "
                                   "the retrainings running were marked FAIL")
        return outcome

    def _in_pool(self, config: SweepConfig, supervise):
        """`supervise(pool)` with this sweep's worker processes, which start first: they load TensorFlow and the
        data while this process loads MLflow and Optuna. No worker outlives the call, however it ends."""
        from pipeline.worker_pool import WORKER_NAME, WorkerPool

        if multiprocessing.current_process().name.startswith(WORKER_NAME):
            raise SweepError("a sweep was started while a worker process imported your script: worker processes "
                             "start fresh and import the script that made them, so put its sweep under "
                             "`if __name__ == \"__main__\":` (a notebook needs nothing)")
        with WorkerPool(config, self.workers, self.verbose).start_all() as pool:
            return supervise(pool)

    def study(self) -> "optuna.Study":
        """The Optuna study itself (for optuna.visualization, say); StudyError if it has never run."""
        from pipeline.study import load_existing_study

        return load_existing_study(self.config.study.storage, self.config.study.name)

    def _tracked(self, study: "optuna.Study | None" = None) -> str:
        """The tracking store's URI, checked before a result is read from it: missing, a server that does not
        answer or a URI MLflow cannot use is one line at once, not blank results or minutes of retries. A `study`
        none of whose trials has a run yet has nothing there to read: its store need not exist."""
        from pipeline import keys, tracking

        if study is not None and not any(keys.RUN_ID in t.user_attrs for t in study.get_trials(deepcopy=False)):
            return self.config.tracking.tracking_uri
        return tracking.check_readable(self.config.tracking.tracking_uri)

    def trials(self) -> "pd.DataFrame":
        """Every trial joined with its MLflow run, best first: the columns of `sweep report --format csv`
        (best, trial, state, the metrics, the parameters, the model's costs, run id and status)."""
        from pipeline.report import trials_table

        study = self.study()
        self._tracked(study)
        return trials_table(study, self.config)

    def best(self) -> "Best":
        """What `export` ships: the confirmed winner's best seed where the study has a confirmation, else the
        best COMPLETE trial by the study's (validation) metric; with its run's test metrics."""
        return self._best(self.study(), self._tracked())

    def _best(self, study: "optuna.Study", uri: str) -> "Best":
        """best(), from a study already loaded and a tracking store already checked."""
        from pipeline import tracking
        from pipeline.winner import winner

        chosen = winner(study, self.config, uri)
        logged = tracking.run_metrics(uri, chosen.run_id)
        tests = {name: logged.get(name) for name in TASK_TEST_METRICS[self.config.task]}
        return Best(chosen.number, dict(chosen.params), self.config.study.metric, chosen.value, tests, chosen.run_id,
                    chosen.confirmed)

    def history(self, trial: int | None = None) -> "pd.DataFrame":
        """A trial's per-epoch curves from its MLflow run (loss, accuracy, val_loss, val_accuracy, ...), one row
        per epoch; the best's (as `best()` names it) when `trial` is None."""
        from pipeline import tracking

        run_id, uri = self._run_of(trial, needs_model=False)
        return tracking.metric_history(uri, run_id)

    def load_model(self, trial: int | None = None) -> "keras.Model":
        """The Keras model of the best (as `best()` names it) or a given COMPLETE trial, from its MLflow run: it
        takes raw inputs (its preprocessing is built in) and returns class probabilities (a regression: the
        label's value)."""
        run_id, uri = self._run_of(trial, needs_model=True)
        from pipeline.tensorflow_setup import load_tensorflow

        load_tensorflow(self.verbose)
        from pipeline.tracking import models

        return models.load_model(models.trial_model_uri(run_id), uri)

    def data(self) -> "Splits":
        """The data this sweep reads, split as its trials split it (x_train, y_train, x_val, y_val, x_test, y_test
        as raw arrays; class_names): to look at, or to predict on with load_model()'s model. The folder the study
        recorded, as export reads it, unless data_dir was given now: a stored sweep file need not name it."""
        from pipeline import keys
        from pipeline.data import load_splits, located_folder
        from pipeline.study import find_study

        data, study = self.config.data, None if self.data_given else find_study(self.config)
        recorded = study.user_attrs.get(keys.DATA) if study is not None else None
        if recorded:
            data = dataclasses.replace(data, data_dir=located_folder(recorded["data_dir"], self.config.folder))
        return load_splits(data, self.config.study.seed)

    def _run_of(self, trial: int | None, needs_model: bool) -> tuple[str, str]:
        """The run id of search trial number `trial`, or of the best, and the checked tracking store that holds it
        (the study loaded and the store checked once); refused, naming the study's trials, when there is no such
        trial or (for a model) it did not complete."""
        study = self.study()
        if trial is None:
            uri = self._tracked()
            return self._best(study, uri).run_id, uri
        from pipeline import keys

        trials = study.get_trials(deepcopy=False)
        # A number read from trials() is NumPy's int64, an Integral but no int.
        if isinstance(trial, bool) or not isinstance(trial, numbers.Integral) or not 0 <= trial < len(trials):
            shown = int(trial) if isinstance(trial, numbers.Integral) else repr(trial)
            raise BadInputError(f"trial {shown}: study '{self.name}' has trials 0 to {len(trials) - 1}")
        found, trial = trials[trial], int(trial)
        if needs_model and found.state.name != "COMPLETE":
            raise BadInputError(f"trial {trial} of study '{self.name}' is {found.state.name}: only a COMPLETE trial "
                                "keeps its model")
        if keys.RUN_ID not in found.user_attrs:
            raise BadInputError(f"trial {trial} of study '{self.name}' has no MLflow run ({found.state.name})")
        return found.user_attrs[keys.RUN_ID], self._tracked()

    def export(self, out: str | Path, *, refit: bool = False, name: str | None = None, force: bool = False,
               max_latency_ms: float | None = None, max_params: int | None = None,
               max_model_mb: float | None = None) -> "Exported":
        """Write the best model (as `best()` names it, or the best within the limits) to `out` as model.keras,
        saved_model/ and metadata.json, registered in MLflow as `name` (default tracking.registered_model or the
        study's name) with alias @champion; `refit` retrains it on train + validation first."""
        limits = export_limits(max_params, max_latency_ms, max_model_mb)  # refused before TensorFlow loads
        if not isinstance(out, (str, Path)) or not str(out).strip():
            raise BadInputError(f"--out: the folder to export to, as a string or Path, got {out!r}")
        from pipeline.tensorflow_setup import load_tensorflow

        load_tensorflow(self.verbose)
        from pipeline.export import export_best
        from pipeline.report import format_export

        info = export_best(self.config, Path(out), refit=refit, name=name, force=force, data_given=self.data_given,
                           limits=limits)
        return Exported(Path(out), info, format_export(info, Path(out)))

    def report(self, fmt: str = "table", width: int | None = None) -> str:
        """`sweep report`'s text: the trials as a table (cut to `width` characters, if given), CSV or markdown;
        the table and markdown forms add the confirmation and the "is it done?" verdict."""
        formats = ("table", "csv", "markdown")
        if fmt not in formats:
            raise BadInputError(f"format {fmt!r}: choose one of {', '.join(formats)}")
        if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
            raise BadInputError(f"width: the characters a line may take, a whole number of at least 1, got {width!r}")
        from pipeline.report import format_trials, study_conclusions

        study = self.study()
        self._tracked(study)
        text = format_trials(study, self.config, fmt, width)
        if fmt == "csv":  # CSV stays one table for spreadsheets
            return text
        return f"{text.rstrip()}\n\n{study_conclusions(study, self.config, width)}\n"

    def compare(self, other: "Sweep | str | Path") -> "Comparison":
        """This study against another (a Sweep, a sweep file with its own stores, or a study's name in this
        storage): each side's best configuration, and whether their difference is larger than the seed noise."""
        from pipeline.compare import check_comparable, data_warning, render, side

        if isinstance(other, Path) or (isinstance(other, str) and is_sweep_file(other)):
            other = Sweep.from_file(other)  # with its own stores, as `sweep compare` reads a file
        elif isinstance(other, str):
            other = Sweep.from_study(other, storage=self.config.study.storage,
                                     tracking_uri=self.config.tracking.tracking_uri)
        elif not isinstance(other, Sweep):
            raise BadInputError(f"compare: the other study is a Sweep, a sweep file or a study's name, got {other!r}")
        check_comparable(self.config, other.config)
        self._tracked(self.study())
        other._tracked(other.study())
        a, b = side(self.config), side(other.config)
        return Comparison(a, b, render(a, b), data_warning(a, b))

    @classmethod
    def from_spec(cls, spec: str | Path, *, storage: str | None = None, tracking_uri: str | None = None) -> "Sweep":
        """A sweep file when `spec` names one (or ends in .yaml), else a study's name in `storage`."""
        if isinstance(spec, Path):
            spec = str(spec)
        if not isinstance(spec, str):
            raise BadInputError(f"a sweep file or a study's name, got {spec!r}")
        if is_sweep_file(spec):
            return cls.from_file(spec, storage=storage, tracking_uri=tracking_uri)
        return cls.from_study(spec, storage=storage, tracking_uri=tracking_uri)


@dataclass(frozen=True)
class Best:
    """The trial `export` would ship: its search trial, parameters, validation value and test metrics."""

    trial: int  # the search trial (of the configuration, when confirmed)
    params: dict
    metric: str  # the study's metric (validation)
    value: float  # the shipped model's own value of it
    test: dict  # the task's test metrics of the shipped model's run (test_accuracy, test_loss; test_rmse, ...)
    run_id: str  # the run whose model is shipped (a confirmed winner's best seed)
    confirmed: "Confirmed | None" = None  # mean ± sd over its seeds, when the study has a confirmation

    def __str__(self) -> str:
        tests = ", ".join(f"{name} {value:.4f}" for name, value in self.test.items() if value is not None)
        lines = [f"trial {self.trial}: {self.metric} {self.value:.4f}{', ' + tests if tests else ''} (run {self.run_id})"]
        if self.confirmed is not None:
            c = self.confirmed
            lines.append(f"  confirmed over {len(c.values)} seeds: {self.metric} {c.mean:.4f} ± {c.std:.4f}, "
                         f"test {c.test_mean:.4f} ± {c.test_std:.4f}")
        lines.append("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in self.params.items()))
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


@dataclass(frozen=True)
class Exported:
    """What `export` wrote: the folder, its metadata.json as a dict, and `sweep export`'s summary."""

    out: Path
    info: dict
    summary: str = dataclasses.field(repr=False, default="")

    def __str__(self) -> str:
        return self.summary

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


@dataclass(frozen=True)
class Comparison:
    """Two studies' chosen configurations side by side (pipeline.compare), the table `sweep compare` prints, and
    a warning when they ran on different data."""

    a: "Side"
    b: "Side"
    text: str
    warning: str | None = None

    def __str__(self) -> str:
        return f"warning: {self.warning}\n\n{self.text}" if self.warning else self.text

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def init_sweep(data: str | Path, out: str | Path | None = None, label: str | None = None, force: bool = False,
               timing: bool = True) -> "Scaffold":
    """`sweep init DATA`: inspect the data and write a commented sweep file sized to it (pipeline.scaffold)."""
    quiet_libraries()
    from pipeline import scaffold

    return scaffold.init_sweep(data, out, label, force, timing)


def list_studies(storage: str | None = None, tracking_uri: str | None = None) -> "pd.DataFrame":
    """`sweep list`: one row per study in the storage, with its trials by state, best, confirmation, last
    activity and whether a process runs one now (pipeline.listing)."""
    quiet_libraries()
    from pipeline import listing

    for option, value in (("--storage", storage), ("--tracking-uri", tracking_uri)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise BadInputError(f"{option}: must be a URL (a non-empty string), got {value!r}")

    return listing.list_studies(storage or DEFAULT_STORAGE, tracking_uri or DEFAULT_TRACKING_URI)


def is_sweep_file(spec: str) -> bool:
    """Whether a command's STUDY argument names a sweep file (else a study's name)."""
    return spec.endswith((".yaml", ".yml")) or Path(spec).is_file()


def quiet_libraries() -> None:
    """TensorFlow's C++ log lines and MLflow's per-download bars bury our own output (libraries' own settings,
    read when they load; TensorFlow's start-up lines are silenced at the descriptor as it loads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
