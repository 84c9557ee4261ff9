"""`sweep run`: the supervisor. It never imports TensorFlow and never runs a trial.

Its workers (pipeline.worker_pool) are already starting when it runs. It opens the stores once their
data has passed its checks, hands them the parent run, lets the pool start a fresh worker whenever one
has run its `study.trials_per_process` trials (TensorFlow keeps a few MiB of traced graphs per trained
model that nothing frees in-process, tensorflow/tensorflow#61791), shows one progress bar read from the
study's storage, and ends the parent run. SIGINT and SIGTERM are forwarded to the workers, which end their
trials as FAIL/KILLED. Several machines share one study through Optuna's storage and one MLflow server: no
scheduler of our own.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys

import optuna
from optuna.trial import TrialState

from pipeline import confirmation, first_trials, keys, plots, processes, stores, tracking, verdict
from pipeline.config import SweepConfig
from pipeline.data import describe_folder
from pipeline.errors import BadInputError, SweepConfigError, SweepError
from pipeline.progress import Progress
from pipeline.report import ConfirmationOutcome, SweepOutcome
from pipeline.study import (StudyNotFound, best_complete_trial, budget_left, check_space_fits, died_elsewhere,
                            end_failed_runs, fail_dead_trials, failure_reason, find_study, finished_count, has_best, is_surplus,
                            load_existing_study, open_study, repair_journal, settled, storage_lost)
from pipeline.worker import Go, Ready
from pipeline.worker_pool import STOP_SIGNALS, WorkerPool


def run_sweep(config: SweepConfig, pool: WorkerPool, show_progress: bool = True) -> SweepOutcome:
    """Run (or resume) the sweep a config describes until its trial or time budget is spent.

    The pool's workers are already starting (they load TensorFlow and the data while this process loads
    MLflow and Optuna); nothing is written until they say the data is good.
    """
    with pool.forwarding_signals():
        tracking.check_reachable(config.tracking.tracking_uri)
        _say(repair_journal(config.study.storage))  # before anything else reads or writes the study
        existing = find_study(config)
        unfinished = set()  # trials that may end during this command, one of them failed as its process died
        if existing is not None:
            check_space_fits(existing, config)
            unfinished = {t.number for t in existing.get_trials(deepcopy=False) if not t.state.is_finished()}
            fail_dead_trials(existing)  # a dead trial must not hold a place in the budget
            if settled(existing, config):
                pool.stop()
                return _outcome(config, existing, pool, config.tracking.tracking_uri, None, len(existing.trials),
                                _spent_message(existing, config), unfinished=unfinished)
        first = first_trials.plan(config, existing)  # a warm start that does not fit: refused before any write
        tracking.prepare(config.tracking.tracking_uri)
        data = pool.wait_until_ready()  # the data passed its checks: only now is anything written
        _check_same_data(existing, data, config)
        _check_same_builder(existing, data, config)
        tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
        study = open_study(config)
        _clean_dead(study)
        before = len(study.trials)
        if settled(study, config):  # another process finished it meanwhile
            pool.stop()
            return _outcome(config, study, pool, tracker.tracking_uri, None, before, _spent_message(study, config),
                            unfinished=unfinished)
        study.set_user_attr(keys.SWEEP_FILE, config.text)
        study.set_user_attr(keys.DATA, {"data_dir": data.data_dir, "digest": data.digest})
        if data.builder is not None:
            study.set_user_attr(keys.BUILDER, data.builder)
        _say_first(first, first_trials.enqueue(study, config, first))
        parent_id = _open_parent(study, config, tracker)
        if first.source is not None:
            tracking.log_parent_text(parent_id, json.dumps(first.source, indent=2) + "\n",
                                     f"{keys.SWEEP_DIR}/warm_start.json")
        return _supervise(pool, config, study, tracker, parent_id, before, show_progress, unfinished)


def _say(note: str | None) -> None:
    """A note on stderr, where the progress goes: something the command repaired or noticed, no error."""
    if note:
        print(f"sweep: note: {note}", file=sys.stderr, flush=True)


def _say_first(first: first_trials.FirstTrials, queued: int) -> None:
    """Where the first trials come from, when this command queued any (a resumed study's are already there), and
    a warm start that found nothing to take."""
    if queued or (first.source is not None and not first.source["trials"]):
        for note in first.notes:
            _say(note)


def _clean_dead(study: optuna.Study) -> None:
    """Fail the trials of dead processes and end their MLflow runs (the tracking store is open)."""
    fail_dead_trials(study)
    end_failed_runs(study)


def _open_parent(study: optuna.Study, config: SweepConfig, tracker: tracking.Tracker) -> str:
    """The study's one parent run, found by the id the study recorded (or its trials' runs name), so a copied
    or moved store keeps it; says when the store moved since the study last ran."""
    identity = config.storage_identity
    was = study.user_attrs.get(keys.STORED_AT)
    known = study.user_attrs.get(keys.PARENT_RUN_ID) or tracking.parent_of(
        [t.user_attrs[keys.RUN_ID] for t in study.get_trials(deepcopy=False) if keys.RUN_ID in t.user_attrs][-1:])
    parent_id = tracking.open_parent_run(tracker, config.study.name, identity, config.path, _settings(config), known)
    # Only a file store moves (cp -r mlruns elsewhere/): a server named another way (localhost, 127.0.0.1) or reached
    # through a storage proxy is the same store, and its identity is a URL where a file's is a path.
    if was is not None and was != identity and "://" not in was:
        _say(f"study '{config.study.name}' was last run from {stores.printable(was)} and is now at "
             f"{stores.printable(identity)}: the store moved; its MLflow runs are joined by the ids it recorded")
    if not config.path.is_file():  # a sweep given as a dict, or the copy a study keeps: its text is what ran
        tracking.log_parent_text(parent_id, config.text, f"{keys.SWEEP_DIR}/sweep.yaml")
    if config.builder_path is not None:
        tracking.log_parent_file(parent_id, config.builder_path, keys.BUILDER_DIR)
    study.set_user_attr(keys.PARENT_RUN_ID, parent_id)
    study.set_user_attr(keys.STORED_AT, identity)
    return parent_id


def _supervise(pool: WorkerPool, config: SweepConfig, study: optuna.Study, tracker: tracking.Tracker,
               parent_id: str, before: int, show_progress: bool, unfinished: set[int]) -> SweepOutcome:
    """Hand the workers the parent run and watch them until they are done; end the parent run."""
    _release_and_watch(pool, tracker, parent_id, "search", Progress(study, config, tracker.tracking_uri, show_progress),
                       lambda: settled(study, config), lambda: _clean_dead(study), config.study.storage)
    _refresh_study_plots(study, parent_id, config.study.objectives)
    confirmed = confirmation.of_study(study, config, tracker.tracking_uri)
    _log_conclusions(study, confirmed, config, parent_id)
    tracking.close_parent_run(parent_id, "KILLED" if pool.stopped_by else "FINISHED")
    message = ""
    if pool.stopped_by:
        message = interrupted(study, pool.pids, pool.stopped_by, before)
    return _outcome(config, study, pool, tracker.tracking_uri, parent_id, before, message, pool.stopped_by,
                    unfinished)


def interrupted(study: optuna.Study, pids: set[int], signum: int, before: int) -> str:
    """What a stop signal ended: the trials this command's workers (`pids`) were running (FAIL now), or none (a
    worker waiting for another machine's trial, or one whose last trial had just ended, has none)."""
    stopped = [t.number for t in study.get_trials(deepcopy=False)[before:]
               if t.state == TrialState.FAIL and t.user_attrs.get(keys.PID) in pids
               and t.user_attrs.get(keys.ERROR, "").startswith("KeyboardInterrupt")]
    if not stopped:
        what = "no trial was running here"
    elif len(stopped) == 1:
        what = f"trial {stopped[0]} was marked FAIL"
    else:
        what = f"trials {', '.join(map(str, stopped))} were marked FAIL"
    return f"interrupted ({STOP_SIGNALS[signum]}): {what}"


def run_confirmation(config: SweepConfig, pool: WorkerPool, show_progress: bool = True) -> ConfirmationOutcome:
    """Retrain the study's top configurations with more seeds (pipeline.confirmation), resuming any earlier
    confirmation of it; bad settings and a missing study are refused before anything is written."""
    settings = config.study.confirm
    with pool.forwarding_signals():
        tracking.check_reachable(config.tracking.tracking_uri)
        _say(repair_journal(config.study.storage))
        try:
            study = load_existing_study(config.study.storage, config.study.name)
        except StudyNotFound as exc:
            raise BadInputError(f"{exc}; a confirmation needs a study that has run") from None
        retrainings = confirmation.plan(study, config, settings.top_k, settings.seeds)
        queue = confirmation.find(config.study.storage, config.study.name)
        if queue is not None and _all_done(queue, retrainings):
            pool.stop()
            return _confirmation_outcome(config, study, queue, None)
        ready = pool.wait_until_ready()
        _check_same_data(study, ready, config)
        _check_same_builder(study, ready, config)
        tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
        queue = confirmation.open_confirmation(config)
        _clean_dead(queue)
        confirmation.enqueue_missing(queue, retrainings)
        parent_id = _open_parent(study, config, tracker)
        progress = Progress(queue, config, tracker.tracking_uri, show_progress, total=len(retrainings),
                            desc=f"{config.study.name} confirm")
        _release_and_watch(pool, tracker, parent_id, "confirm", progress, lambda: confirmation.queue_empty(queue),
                           lambda: _clean_dead(queue), config.study.storage)
        outcome = _confirmation_outcome(config, study, queue, parent_id)
        _log_conclusions(study, outcome.results, config, parent_id)
        tracking.close_parent_run(parent_id, "KILLED" if pool.stopped_by else "FINISHED")
        return dataclasses.replace(outcome, stopped_by=pool.stopped_by)


def _release_and_watch(pool: WorkerPool, tracker: tracking.Tracker, parent_id: str, phase: str, progress: Progress,
                       done, fail_dead, storage: str) -> None:
    """Hand the workers the parent run and the phase, and watch them until they have ended; a failure or an
    interruption ends the parent run KILLED (and the study's storage failing stops the workers, in one line)."""
    try:
        with storage_lost(storage), processes.shared_tracking_server(tracker.tracking_uri, pool.size) as worker_uri:
            pool.release(Go(parent_id, worker_uri, phase))
            with progress:
                failure = pool.watch(progress, done, fail_dead)
            if failure is None:
                fail_dead()  # trials the workers' Optuna failed by heartbeat have their runs ended too
    except BaseException:
        pool.stop()
        tracking.close_parent_run(parent_id, "KILLED")
        raise
    if failure is not None:
        tracking.close_parent_run(parent_id, "KILLED")
        raise SweepError(failure.message, failure.exit_code)


def _all_done(queue: optuna.Study, retrainings: list) -> bool:
    held = {(t.user_attrs.get(keys.SOURCE_TRIAL), t.user_attrs.get(keys.REPEAT))
            for t in queue.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    return all((r.trial_number, r.repeat) in held for r in retrainings)


def _confirmation_outcome(config: SweepConfig, study: optuna.Study, queue: optuna.Study,
                          parent_id: str | None) -> ConfirmationOutcome:
    uri = config.tracking.tracking_uri
    results = confirmation.results(study, queue, lambda run_id: tracking.test_metric(uri, run_id, config.test_metric))
    return ConfirmationOutcome(config.study.name, results, confirmation.raw_winner_differs(study, results),
                               parent_id)


def _log_conclusions(study: optuna.Study, confirmed: list, config: SweepConfig, parent_id: str) -> None:
    """The confirmation table (when there is one) and the verdict, as text and a plot, on the parent run, in the
    study's metric and the task's headline test metric."""
    metric = config.study.metric
    if confirmed:
        tracking.log_parent_text(parent_id, confirmation.table(confirmed, metric, config.test_metric) + "\n",
                                 f"{keys.CONFIRMATION_DIR}/confirmation.md")
    judged = verdict.for_study(study, confirmed, metric)
    tracking.log_parent_text(parent_id, verdict.describe(judged) + "\n", f"{keys.VERDICT_DIR}/verdict.txt")
    figure = plots.best_so_far_figure(judged, metric)
    tracking.log_study_figures(parent_id, {"best_so_far": figure})
    plots.close(figure)


def _check_same_data(study: optuna.Study | None, data: Ready, config: SweepConfig) -> None:
    """A study resumed on other data would compare trials that saw different images: refused."""
    recorded = study.user_attrs.get(keys.DATA) if study is not None else None
    if recorded and recorded["digest"] != data.digest:
        raise SweepConfigError(
            f"{config.path}: study '{config.study.name}' was run on {describe_folder(recorded['data_dir'])} (digest "
            f"{recorded['digest']}), but this run's data is {describe_folder(data.data_dir)} (digest {data.digest}); "
            "pass --data-dir for the study's data, or give this data its own study.name")


def _check_same_builder(study: optuna.Study | None, ready: Ready, config: SweepConfig) -> None:
    """A study resumed with another network (a builder's source edited, added or removed) would compare trials
    of different models: refused, like other data."""
    if study is None or not study.trials:
        return
    recorded = study.user_attrs.get(keys.BUILDER)
    if (recorded or {}).get("digest") == (ready.builder or {}).get("digest"):
        return
    was = (f"the builder {recorded['file']}:{recorded['function']} (digest {recorded['digest'][:12]})" if recorded
           else "no builder")
    now = (f"{config.model.builder_file}:{config.model.builder_function} (digest {ready.builder['digest'][:12]})"
           if ready.builder else "no builder")
    raise SweepConfigError(f"{config.path}: model.builder: study '{config.study.name}' was run with {was}, but this "
                           f"run has {now}: the network changed since the study started; restore it, or give the "
                           "changed network its own study.name")


def _refresh_study_plots(study: optuna.Study, parent_id: str, names: tuple[str, ...]) -> None:
    figures = plots.study_figures(study, names)
    tracking.log_study_figures(parent_id, figures)
    for figure in figures.values():
        plots.close(figure)


def _settings(config: SweepConfig) -> dict:
    """The study and data settings as parent-run tags; the storage without user name and password."""
    study = dataclasses.asdict(config.study)
    study.pop("name")
    study["storage"] = config.storage_identity
    return {**study, **{f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()}}


def _spent_message(study: optuna.Study, config: SweepConfig) -> str:
    n_left, _ = budget_left(study, config)
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if n_left == 0 and running:
        return (f"study '{config.study.name}' has {finished_count(study)} finished trials of the "
                f"{config.study.n_trials} asked for, and {running} running on machines this one cannot watch; nothing "
                "to do now. Their heartbeats cannot be seen from here (a journal file has none; a database and a "
                "storage proxy keep them apart): rerun once they have ended (a dead one is then run again), and share a "
                "study between machines through one kind of URL to a database (postgresql://... or grpc://...)")
    if n_left == 0:
        return (f"study '{config.study.name}' already has {finished_count(study)} finished trials of the "
                f"{config.study.n_trials} asked for; nothing to do (raise --n-trials to continue it)")
    return (f"study '{config.study.name}' has used its {config.study.timeout:.0f} s timeout; nothing to do "
            "(raise --timeout to continue it)")


def _outcome(config: SweepConfig, study: optuna.Study, pool: WorkerPool, tracking_uri: str, parent_id: str | None,
             before: int, message: str = "", stopped_by: int | None = None, unfinished: set[int] = frozenset()
             ) -> SweepOutcome:
    """What the command did; `before` is the study's size when the command began, `unfinished` its trials then
    that had not ended (any of them, or a later one, may have been failed as its process died)."""
    has_complete = has_best(study)
    return SweepOutcome(
        study_name=config.study.name, storage=stores.resolve_uri(config.study.storage, create=False),
        tracking_uri=stores.resolve_uri(tracking_uri, create=False), parent_run_id=parent_id,
        new_trials=_ran_here(study, pool, before), finished_trials=finished_count(study),
        best=best_complete_trial(study) if has_complete else None, message=message, stopped_by=stopped_by,
        no_best=_no_best(study), died=_died(study, before, unfinished))


def _died(study: optuna.Study, before: int, unfinished: set[int]) -> tuple[str, ...]:
    """The trials failed during this command because their process died, here or on another machine."""
    return tuple(f"trial {t.number} of host {t.user_attrs.get(keys.HOST, '?')} was failed: {failure_reason(t)}"
                 for t in study.get_trials(deepcopy=False)
                 if (t.number >= before or t.number in unfinished) and died_elsewhere(t))


def _ran_here(study: optuna.Study, pool: WorkerPool, before: int) -> int:
    """The trials this command's workers ran; other processes and machines may have added to the study too."""
    host = socket.gethostname()
    return sum(t.number >= before and t.user_attrs.get(keys.HOST) == host and t.user_attrs.get(keys.PID) in pool.pids
               and not is_surplus(t) for t in study.get_trials(deepcopy=False))


def _no_best(study: optuna.Study) -> str:
    complete = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if complete:
        return (f"None of the {complete} COMPLETE trial(s) meets the study's constraints (study.constraints); "
                "`sweep report` lists their costs")
    return "No trial has completed yet."
