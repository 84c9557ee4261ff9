"""`sweep run`: the supervisor. It never imports TensorFlow and never runs a trial.

It starts N worker processes (pipeline.worker), opens the stores once their data has passed its checks,
hands them the parent run, starts a fresh worker whenever one has run its `study.trials_per_process`
trials (TensorFlow keeps a few MiB of traced graphs per trained model that nothing frees in-process,
tensorflow/tensorflow#61791), shows one progress bar read from the study's storage, and ends the parent
run. SIGINT and SIGTERM are forwarded to the workers, which end their trials as FAIL/KILLED. Several
machines share one study through Optuna's storage and one MLflow server: no scheduler of our own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
from dataclasses import dataclass, field
from typing import Iterator

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from pipeline import keys, plots, processes, stores, tracking
from pipeline.config import SweepConfig
from pipeline.errors import SweepConfigError, SweepError
from pipeline.study import (best_complete_trial, budget_left, budget_spent, fail_dead_trials, find_study,
                            finished_count, open_study)
from pipeline.worker import Failed, Finished, Go, Ready, WorkerSpec, main as worker_main

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@dataclass
class SweepOutcome:
    """What a `sweep run` did, for the summary."""

    study_name: str
    storage: str
    tracking_uri: str
    parent_run_id: str | None
    new_trials: int
    finished_trials: int
    best: optuna.trial.FrozenTrial | None
    message: str = ""
    stopped_by: int | None = None  # the signal that stopped the sweep


def run_sweep(config: SweepConfig, workers: int = 1, show_progress: bool = True,
              verbose: bool = False) -> SweepOutcome:
    """Run (or resume) the sweep a config describes until its trial or time budget is spent."""
    _check_workers(config, workers)
    tracking.check_reachable(config.tracking.tracking_uri)
    existing = find_study(config)
    if existing is not None and budget_spent(existing, config):
        return _outcome(config, existing, config.tracking.tracking_uri, None, len(existing.trials),
                        _spent_message(existing, config))
    threads = config.study.threads or max(1, (os.cpu_count() or 1) // workers)
    with _WorkerPool(config, threads, verbose) as pool, pool.forwarding_signals():
        for _ in range(workers):
            pool.start()
        pool.wait_until_ready()  # the data passed its checks: only now is anything written
        tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
        study = open_study(config)
        fail_dead_trials(study)
        before = len(study.trials)
        if budget_spent(study, config):  # another process finished it meanwhile
            pool.release(None)
            return _outcome(config, study, tracker.tracking_uri, None, before, _spent_message(study, config))
        study.set_user_attr(keys.SWEEP_FILE, config.path.read_text())
        parent_id = tracking.open_parent_run(tracker, config.study.name, config.path, _settings(config))
        return _supervise(pool, config, study, tracker, parent_id, before, workers, show_progress)


def _supervise(pool: "_WorkerPool", config: SweepConfig, study: optuna.Study, tracker: tracking.Tracker,
               parent_id: str, before: int, workers: int, show_progress: bool) -> SweepOutcome:
    """Hand the workers the parent run and watch them until they are done; end the parent run."""
    try:
        with processes.shared_tracking_server(tracker.tracking_uri, workers) as worker_uri:
            pool.release(Go(parent_id, worker_uri))
            with _Progress(study, config, tracker.tracking_uri, show_progress) as progress:
                failure = pool.watch(study, progress)
    except BaseException:
        tracking.close_parent_run(parent_id, "KILLED")
        raise
    if failure is not None:
        tracking.close_parent_run(parent_id, "KILLED")
        raise SweepError(failure.message, failure.exit_code)
    _refresh_study_plots(study, parent_id)
    tracking.close_parent_run(parent_id, "KILLED" if pool.stopped_by else "FINISHED")
    message = ""
    if pool.stopped_by:
        message = f"interrupted: the current trial was marked FAIL ({SIGNAL_NAMES[pool.stopped_by]})"
    return _outcome(config, study, tracker.tracking_uri, parent_id, before, message, pool.stopped_by)


@dataclass(eq=False)  # compared and hashed by identity: two workers are never "equal"
class _Worker:
    number: int
    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection
    ready: bool = False
    last: Finished | Failed | None = None  # the worker's last word, once it has said it


@dataclass
class _WorkerPool:
    """The supervisor's worker processes: started, released with Go, replaced, and told to stop."""

    config: SweepConfig
    threads: int
    verbose: bool
    workers: list[_Worker] = field(default_factory=list)
    go: Go | None = None
    stopped_by: int | None = None
    started: int = 0
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks

    def __enter__(self) -> "_WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        """Whatever happened, no worker outlives the command."""
        for worker in self.workers:
            worker.process.join(timeout=60 if exc[0] is None else 5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    def start(self) -> None:
        ours, theirs = self.context.Pipe()
        spec = WorkerSpec(self.config, self.started, self.threads, self.verbose)
        process = self.context.Process(target=worker_main, args=(spec, theirs), name=f"sweep-worker-{self.started}")
        process.start()
        theirs.close()
        self.workers.append(_Worker(self.started, process, ours))
        self.started += 1

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM reach the workers, which end their trials cleanly; the supervisor notes which."""
        def forward(signum, frame):
            self.stopped_by = self.stopped_by or signum
            for worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

        previous = {sig: signal.signal(sig, forward) for sig in SIGNAL_NAMES}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait_until_ready(self) -> None:
        """Until every worker has loaded its data; the first one that cannot stops the sweep."""
        while not all(worker.ready for worker in self.workers):
            for worker in self._events(timeout=1.0):
                if worker.last is not None or not worker.process.is_alive():
                    self.release(None)
                    raise self._failure_of(worker)
            if self.stopped_by:
                raise KeyboardInterrupt

    def release(self, go: Go | None) -> None:
        """Send every ready worker its Go (None dismisses them: nothing to do); later ones get it at once."""
        self.go = go
        for worker in self.workers:
            if worker.ready and worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.connection.send(go)

    def watch(self, study: optuna.Study, progress: "_Progress") -> Failed | None:
        """Until every worker has ended: progress lines, fresh workers for spent ones, and the first failure."""
        failure = None
        while self.workers:
            for worker in self._events(timeout=1.0):
                if isinstance(worker.last, Failed) and failure is None:
                    failure = worker.last
                    self._stop_all(signal.SIGTERM)
            progress.update(study)
            for worker in [w for w in self.workers if not w.process.is_alive()]:
                failure = failure or self._retire(worker, study, progress)
        progress.update(study)
        return failure

    def _retire(self, worker: _Worker, study: optuna.Study, progress: "_Progress") -> Failed | None:
        """A worker has exited: replace it if it ran its share and trials remain; report a death."""
        worker.process.join()
        self.workers.remove(worker)
        if isinstance(worker.last, Finished):
            if worker.last.reason == "share" and not self.stopped_by and not budget_spent(study, self.config):
                progress.write(f"worker {worker.number} ran its {self.config.study.trials_per_process} trials "
                               "(study.trials_per_process); a fresh worker continues, with fresh memory")
                self.start()
            return None
        if isinstance(worker.last, Failed):
            return None
        fail_dead_trials(study)
        self._stop_all(signal.SIGTERM)
        return self._failure_of(worker)

    def _events(self, timeout: float) -> list[_Worker]:
        """Workers that said something or exited within `timeout`; Ready ones are answered at once.

        A worker that has said its last word is only watched for its exit: its pipe, at EOF, would
        wake the wait again and again.
        """
        waiting = {w.process.sentinel: w for w in self.workers}
        waiting |= {w.connection: w for w in self.workers if w.last is None}
        heard = []
        for handle in multiprocessing.connection.wait(list(waiting), timeout=timeout):
            worker = waiting[handle]
            self._drain(worker)
            heard.append(worker)
        return list(dict.fromkeys(heard))

    def _drain(self, worker: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):  # the worker exited: its pipe is closed
            while worker.last is None and worker.connection.poll():
                self._receive(worker, worker.connection.recv())

    def _receive(self, worker: _Worker, message) -> None:
        if isinstance(message, Ready):
            worker.ready = True
            if self.go is not None:
                worker.connection.send(self.go)
        else:
            worker.last = message

    def _stop_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

    @staticmethod
    def _failure_of(worker: _Worker) -> SweepError:
        if isinstance(worker.last, Failed):
            return SweepError(worker.last.message, worker.last.exit_code)
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        return SweepError(f"worker {worker.number} {how} without finishing its trial (out of memory?); the "
                          "trial is marked FAIL and the study is kept: rerun the same command to resume")


class _Progress:
    """A progress bar over the study's total trials, with one line per finished trial, read from storage."""

    def __init__(self, study: optuna.Study, config: SweepConfig, tracking_uri: str, enabled: bool):
        self.metric, self.tracking_uri = config.study.metric, tracking_uri
        self.best: float | None = None
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.bar = tqdm(total=config.study.n_trials, initial=finished_count(study), desc=config.study.name,
                        unit="trial", disable=not enabled, dynamic_ncols=True)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def write(self, line: str) -> None:
        self.bar.write(line)

    def update(self, study: optuna.Study) -> None:
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in self.seen:
                self.seen.add(trial.number)
                self._report(trial)
        if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            if study.best_value != self.best:
                self.best = study.best_value
                self.bar.set_postfix({f"best {self.metric}": f"{self.best:.4f}"})

    def _report(self, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.bar.update(1)
        run_id = trial.user_attrs.get(keys.RUN_ID)
        results = tracking.run_metrics(self.tracking_uri, run_id) if run_id else {}
        self.bar.write(format_trial_line(trial, self.metric, results))


def format_trial_line(trial: optuna.trial.FrozenTrial, metric: str, results: dict) -> str:
    """`trial 3 PRUNED val_accuracy=0.8812 test_accuracy=0.8790 units=256 ... epochs=4/30 ...`: a trial
    that stopped early shows the epochs it ran out of those it asked for."""
    parts = [f"trial {trial.number} {trial.state.name}"]
    if trial.value is not None:
        parts.append(f"{metric}={trial.value:.4f}")
    if keys.TEST_ACCURACY in results:
        parts.append(f"test_accuracy={results[keys.TEST_ACCURACY]:.4f}")
    params = dict(trial.user_attrs.get(keys.PARAMS, trial.params))
    ran = len(trial.intermediate_values)
    if "epochs" in params and ran != params["epochs"]:
        params["epochs"] = f"{ran}/{params['epochs']}"
    parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    if trial.state == TrialState.FAIL:
        parts.append(f"error: {trial.user_attrs.get(keys.ERROR, 'unknown')}")
    return " ".join(parts)


def _check_workers(config: SweepConfig, workers: int) -> None:
    if workers < 1:
        raise SweepConfigError(f"--workers: must be at least 1, got {workers}")
    if workers > 1 and stores.is_sqlite(config.study.storage):
        raise SweepConfigError(f"{config.path}: --workers {workers} needs a study storage several processes can "
                               f"share, not a SQLite file: leave out --storage and study.storage (a journal file "
                               "under mlruns/), or pass --storage postgresql://... (several machines)")


def _refresh_study_plots(study: optuna.Study, parent_id: str) -> None:
    figures = plots.study_figures(study)
    tracking.log_study_figures(parent_id, figures)
    for figure in figures.values():
        plots.close(figure)


def _settings(config: SweepConfig) -> dict:
    study = dataclasses.asdict(config.study)
    study.pop("name")
    return {**study, **{f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()}}


def _spent_message(study: optuna.Study, config: SweepConfig) -> str:
    n_left, _ = budget_left(study, config)
    if n_left == 0:
        return (f"study '{config.study.name}' already has {finished_count(study)} finished trials of the "
                f"{config.study.n_trials} asked for; nothing to do (raise --n-trials to continue it)")
    return (f"study '{config.study.name}' has used its {config.study.timeout:.0f} s timeout; nothing to do "
            "(raise --timeout to continue it)")


def _outcome(config: SweepConfig, study: optuna.Study, tracking_uri: str, parent_id: str | None, before: int,
             message: str = "", stopped_by: int | None = None) -> SweepOutcome:
    """What the command did; `before` is the study's size when the command began."""
    has_complete = any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    return SweepOutcome(
        study_name=config.study.name, storage=stores.resolve_uri(config.study.storage, create=False),
        tracking_uri=stores.resolve_uri(tracking_uri, create=False), parent_run_id=parent_id,
        new_trials=len(study.trials) - before, finished_trials=finished_count(study),
        best=best_complete_trial(study) if has_complete else None, message=message, stopped_by=stopped_by)
