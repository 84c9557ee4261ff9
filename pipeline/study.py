"""The Optuna study: storage, sampler, pruner, the budget still owed, and clean-up of dead trials.

The study lives in persistent storage and is resumed by name; `n_trials` and `timeout` are totals for
the study, so rerunning a finished sweep does nothing and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
from pathlib import Path
from typing import Iterator

import grpc
import optuna
from optuna.trial import TrialState

from pipeline import keys, objectives, storages, stores, tracking
from pipeline.config import PrunerConfig, SweepConfig, parse_sweep_text
from pipeline.errors import BadInputError, StudyError, SweepConfigError, SweepError
from pipeline.fraction_pruner import FractionMedianPruner
from pipeline.hyperparameters import FixedParam, FloatParam, IntParam
from pipeline.processes import pid_alive, same_command

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_S, GRACE_S = 20, 60


class StudyNotFound(StudyError):
    """The storage holds no study of that name (or does not exist yet)."""


def open_study(config: SweepConfig, worker: int = 0) -> optuna.Study:
    """Create or resume the named study; refuse one whose direction differs from the sweep file.

    `worker` numbers the processes of one `sweep run`, so that each seeds its sampler differently.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna_storage(config.study.storage)
    with storage_errors(config.study.storage):
        study = optuna.create_study(storage=storage, study_name=config.study.name, load_if_exists=True,
                                    directions=config.directions, pruner=make_pruner(config.study.pruner))
    found = [d.name.lower() for d in study.directions]
    if found != config.directions:
        raise StudyError(f"study '{config.study.name}' in {stores.printable(config.study.storage)} was created to "
                         f"{', '.join(found)}, but {config.path} asks to {', '.join(config.directions)}; give "
                         "the new objectives their own study.name")
    # Offsetting the seed by the trials already run keeps a resumed study from replaying its first picks.
    # Workers of one command offset by their number, or they would all suggest the same values; on a
    # database server other machines may join the study, so their processes also offset by pid.
    local = stores.local_path(stores.resolve_uri(config.study.storage)) is not None
    offset = len(study.trials) + 1000 * worker + (0 if local else os.getpid())
    study.sampler = make_sampler(config.study.sampler, config.study.seed + offset)
    return study


def optuna_storage(url: str):
    """The storage a URL names (pipeline.storages): a journal file, a SQLite file, a database server, or a storage
    proxy in front of one (`grpc://host:port`).

    On a server or a proxy, heartbeats let any process fail the trials of a worker that died (fail_dead_trials);
    their MLflow runs are ended once a process has the tracking store open (end_failed_runs).
    """
    url = stores.resolve_uri(url)
    with storage_errors(url):
        return storages.open_storage(url, storages.Heartbeats(HEARTBEAT_S, GRACE_S))


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """What the storage libraries raise for a store that cannot be used, as one line naming it."""
    import sqlalchemy.exc

    shown = stores.printable(url)
    try:
        yield
    except (sqlalchemy.exc.NoSuchModuleError, sqlalchemy.exc.ArgumentError):
        raise BadInputError(f"{shown}: not a study storage this tool can open; use journal:///path (the default, "
                            "mlruns/optuna.journal), sqlite:///path.db, postgresql://user@host/database, or "
                            "grpc://host:port (a storage proxy)") from None
    except grpc.RpcError as exc:
        raise StudyError(f"the storage proxy {shown} could not serve the study: {_reason(exc, url)}. Check that the "
                         "proxy runs and that its database is up (the proxy's own output says what failed)") from None
    except (sqlalchemy.exc.SQLAlchemyError, OSError, ValueError, optuna.exceptions.StorageInternalError) as exc:
        advice = ("Check the path (a damaged file can be moved away; its study is then lost)" if stores.local_path(url)
                  else "Check that the server runs and the database exists (CREATE DATABASE ...)")
        raise StudyError(f"cannot open the study storage {shown}: {_reason(exc, url)}. {advice}, or pass another "
                         "--storage") from None


@contextlib.contextmanager
def storage_lost(url: str) -> Iterator[None]:
    """The study's storage failing mid-sweep (its database or proxy gone) as one line, wherever it is noticed (a
    worker between trials, the supervisor reading progress), instead of a traceback: the finished trials are
    kept, and a trial left RUNNING is failed by the rerun that resumes the study."""
    try:
        yield
    except storages.FAILURES as exc:
        raise StudyError(f"the study storage {stores.printable(url)} failed mid-sweep: {_reason(exc, url)}; the sweep "
                         "stopped, its finished trials are kept: rerun the same command once it answers again"
                         ) from None


def _reason(exc: BaseException, url: str) -> str:
    """One line of what a storage library said: gRPC's details, or a driver's first line without the password."""
    if isinstance(exc, grpc.Call):
        return f"{exc.code().name}: {exc.details()}".strip().rstrip(".")[:300]
    if isinstance(exc, optuna.exceptions.StorageInternalError) and (exc.__cause__ or exc.__context__):
        exc = exc.__cause__ or exc.__context__  # Optuna's "An exception is raised during the commit" hides why
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return _without(text[0][:300] if text else type(exc).__name__, url, stores.printable(url))


def _without(text: str, url: str, shown: str) -> str:
    """A driver's message may quote the URL it was given, password and all."""
    password = url.split("://", 1)[-1].split("?")[0].rpartition("@")[0].partition(":")[2]
    text = text.replace(url, shown)
    return text.replace(password, "***") if password else text


def repair_journal(storage: str) -> str | None:
    """Mend a journal whose last line a crash left without its newline, and say so; None when whole.

    Optuna appends whole lines and ignores an unfinished last one when it reads, but its next record would
    be appended onto that partial line and break the file for good. A last line that is a whole record
    (only the newline was lost) gets its newline back, so the trial it ended stays ended; anything less is
    cut off. The repair holds Optuna's own journal lock, which every writer holds while it appends: under
    it, an unfinished line is no write in progress but what a writer killed mid-write (or a full disk, a
    power loss) left behind.
    """
    url = stores.resolve_uri(storage, create=False)
    path = stores.journal_path(url) if stores.is_journal(url) else None
    if path is None or not path.is_file():
        return None
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))
    with storage_errors(url):
        lock.acquire()
        try:
            with open(path, "rb+") as journal:
                size = journal.seek(0, os.SEEK_END)
                whole = _whole_lines_size(journal, size)
                if whole == size:
                    return None
                journal.seek(whole)
                complete = _is_record(journal.read(size - whole))
                if complete:
                    journal.write(b"\n")
                else:
                    journal.truncate(whole)
                journal.flush()
                os.fsync(journal.fileno())
        finally:
            lock.release()
    if complete:
        return f"{path}: its last record had lost its newline in a crash; restored it (nothing was lost)"
    return (f"{path}: its last line was cut off by a crash ({size - whole} bytes, the unfinished record of its "
            "last write); removed it. Had that write ended a trial, the trial now counts as died and is run again")


def _is_record(line: bytes) -> bool:
    """Whether a line is one whole journal record (a JSON object with Optuna's op_code)."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def _whole_lines_size(journal, size: int, block: int = 65536) -> int:
    """The length of the file up to and including its last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(end - block, 0)
        journal.seek(start)
        found = journal.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def load_existing_study(storage: str, name: str) -> optuna.Study:
    """A study that must already exist; otherwise StudyError listing the studies that do."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = stores.resolve_uri(storage, create=False)
    local = stores.local_path(url)
    if local is not None and not local.is_file():
        raise StudyNotFound(f"no study storage at {url}; run `sweep run` first")
    shown = stores.printable(url)
    backend = optuna_storage(url)
    with storage_errors(url):
        names = optuna.get_all_study_names(backend)
        if name not in names:
            raise StudyNotFound(f"no study named '{name}' in {shown}; studies there: {', '.join(names) or 'none'}")
        return optuna.load_study(study_name=name, storage=backend)


def find_study(config: SweepConfig) -> optuna.Study | None:
    """The sweep's study if it exists already, without creating a storage for it."""
    try:
        return load_existing_study(config.study.storage, config.study.name)
    except StudyNotFound:
        return None


def check_space_fits(study: optuna.Study, config: SweepConfig) -> None:
    """Refuse, before anything runs, a search space the study cannot take: Optuna keeps one kind of
    distribution per parameter for a study (int, float or categorical; log scale or not; the same
    choices), and would fail every trial that asks otherwise. New parameters and moved bounds are fine."""
    recorded: dict = {}
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.distributions)
    changed = [f"{name} (was {_describe(recorded[name])}, now {_describe(_distribution(spec))})"
               for name, spec in config.search_space.items()
               if name in recorded and not isinstance(spec, FixedParam)
               and not _same_kind(recorded[name], _distribution(spec))]
    if changed:
        raise SweepConfigError(
            f"{config.path}: search_space changed in a way study '{config.study.name}' cannot take: "
            f"{'; '.join(changed)}. Give the new space its own study.name (the old study stays as it is), "
            "or restore those entries")


def _distribution(spec) -> optuna.distributions.BaseDistribution:
    if isinstance(spec, IntParam):
        return optuna.distributions.IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    if isinstance(spec, FloatParam):
        return optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return optuna.distributions.CategoricalDistribution(list(spec.choices))


def _same_kind(old, new) -> bool:
    if type(old) is not type(new):
        return False
    if isinstance(old, optuna.distributions.CategoricalDistribution):
        return tuple(old.choices) == tuple(new.choices)
    return old.log == new.log


def _describe(distribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"choices {list(distribution.choices)}"
    kind = "int" if isinstance(distribution, optuna.distributions.IntDistribution) else "float"
    return f"{kind} {distribution.low}..{distribution.high}{', log' if distribution.log else ''}"


class SurplusTrialError(SweepError):
    """Another worker took the study's last trial at the same moment; this one must not run."""


def refuse_surplus(trial: optuna.Trial, n_trials: int) -> None:
    """Workers check the budget before asking for a trial; two asking at once can overshoot it by one."""
    earlier = trial.study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING))
    if sum(t.number < trial.number for t in earlier) >= n_trials:
        raise SurplusTrialError(f"trial {trial.number} is beyond the study's {n_trials} trials")


def is_surplus(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial refused as beyond the budget (refuse_surplus): FAIL, as Optuna keeps every trial it hands out, but
    no trial anyone ran; the progress lines and the summary's count leave it out."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get(keys.ERROR, "").startswith(SurplusTrialError.__name__)


def claim_trial(trial: optuna.Trial) -> None:
    """Record which process runs a trial, so a later run can tell a dead one from a live one."""
    trial.set_user_attr(keys.HOST, socket.gethostname())
    trial.set_user_attr(keys.PID, os.getpid())
    trial.set_user_attr(keys.HEARTBEATS, storages.heartbeats_kept_in(trial.study._storage))


DIED = "its process died"
STOPPED_HEARTBEATS = "its process stopped sending heartbeats"


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose process is gone: on this machine by their pid (SIGKILL, power loss,
    OOM); on a server also those of any machine whose heartbeat stopped. Each keeps why (failure_reason).

    Run before any decision on the budget: a dead trial counted as running would hold its place for ever.
    Only the study is written; end_failed_runs ends their MLflow runs once the tracking store is open.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    host = socket.gethostname()
    for trial in running:
        if trial.user_attrs.get(keys.HOST) == host and not pid_alive(trial.user_attrs.get(keys.PID)):
            _fail_from_outside(study, trial._trial_id, DIED)
    for trial_id in stale_trial_ids(study):
        _fail_from_outside(study, trial_id, STOPPED_HEARTBEATS)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return [t.number for t in running if t.number not in still]


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The RUNNING trials whose last heartbeat is older than the grace period; none without heartbeats
    (SQLite and journal files: there, dead trials are known by their pid)."""
    return study._storage._get_stale_trial_ids(study._study_id) if _has_heartbeats(study) else []


def _fail_from_outside(study: optuna.Study, trial_id: int, reason: str) -> None:
    """Fail another process's trial, saying why. Optuna has no public call for this; it is what its own
    heartbeat check does (which also runs as each worker starts a trial, without the why: failure_reason)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another process did it first
        study._storage.set_trial_user_attr(trial_id, keys.ERROR, reason)
        study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def failure_reason(trial: optuna.trial.FrozenTrial) -> str:
    """Why a FAIL trial failed. A trial's own failure records its exception (pipeline.trial); one failed from
    outside without a word was failed by Optuna's own heartbeat check, as a worker started a trial."""
    return trial.user_attrs.get(keys.ERROR, STOPPED_HEARTBEATS)


def died_elsewhere(trial: optuna.trial.FrozenTrial) -> bool:
    """A FAIL trial whose process died (by pid or heartbeat), rather than one that failed by itself."""
    return trial.state == TrialState.FAIL and failure_reason(trial) in (DIED, STOPPED_HEARTBEATS)


def awaited(study: optuna.Study, config: SweepConfig) -> list[optuna.trial.FrozenTrial]:
    """The RUNNING trials a process must wait for before it leaves: the study's trials are all taken, some of
    them only by running trials of other commands whose death it can tell: on this machine by their pid, on
    another by heartbeats kept where its own are (watched_by_heartbeat).

    Leaving then would leave the study short for ever if such a trial's machine had died (a SIGKILL, a lost
    node); waiting at most the heartbeat grace, the process fails that trial and runs the missing one. This
    command's own workers' trials are the supervisor's to watch; another machine's trial on a journal file, or
    one whose heartbeats this process cannot see, nobody can watch: nobody waits for those.
    """
    trials = study.get_trials(deepcopy=False)
    n_left, time_left = budget_left(study, config)
    finished = sum(t.state in COUNTED for t in trials)
    if n_left > 0 or finished >= config.study.n_trials or (time_left is not None and time_left <= 0):
        return []
    return [t for t in trials if t.state == TrialState.RUNNING and _watchable(study, t)]


def _watchable(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Another command's trial on this machine (by its pid), or another machine's whose heartbeats this process
    sees; not one of this command's own workers' (the supervisor watches those)."""
    if trial.user_attrs.get(keys.HOST) == socket.gethostname():
        return not same_command(trial.user_attrs.get(keys.PID))
    return watched_by_heartbeat(study, trial)


def watched_by_heartbeat(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether this process can see the trial's heartbeats: this storage has them, and the trial's process kept
    them the same way (a trial recorded before processes said where counts as the same)."""
    ours = storages.heartbeats_kept_in(study._storage)
    return ours is not None and trial.user_attrs.get(keys.HEARTBEATS, ours) == ours


def _has_heartbeats(study: optuna.Study) -> bool:
    """Whether the study's processes send heartbeats (a database server, or a proxy in front of one)."""
    return storages.heartbeats_kept_in(study._storage) is not None


def settled(study: optuna.Study, config: SweepConfig) -> bool:
    """Nothing left for this process to do: the budget is spent, and no running trial it could still have to
    replace holds a place in it (awaited)."""
    return budget_spent(study, config) and not awaited(study, config)


def end_failed_runs(study: optuna.Study) -> None:
    """End FAILED the MLflow runs of FAIL trials that are still RUNNING: a dead process's, or one that failed
    while the tracking server was down and could not end its run then."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = trial.user_attrs.get(keys.RUN_ID)
        if run_id:
            tracking.fail_stale_run(run_id, failure_reason(trial))


def load_study_config(storage: str, name: str) -> SweepConfig:
    """The sweep file a study was last run with (stored on the study), for commands given --study NAME."""
    study = load_existing_study(storage, name)
    text = study.user_attrs.get(keys.SWEEP_FILE)
    if text is None:
        raise StudyError(f"study '{name}' in {stores.printable(storage)} was not created by `sweep run`; pass its "
                         "sweep file")
    config = parse_sweep_text(text, Path(f"<sweep file of study '{name}'>"))
    builder = study.user_attrs.get(keys.BUILDER)
    if builder and "path" in builder:  # the stored sweep file has no folder to find its builder from
        config = dataclasses.replace(config, model=dataclasses.replace(
            config.model, builder=f"{builder['path']}:{builder['function']}"))
    return dataclasses.replace(config, study=dataclasses.replace(config.study, storage=storage))


def best_complete_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best COMPLETE, feasible trial by the study's own objective (validation, never test; the first
    of several objectives)."""
    found = objectives.candidates(study)
    if not found:
        raise StudyError(f"study '{study.study_name}' has {describe_complete(study)}; run the sweep (further) first")
    return found[0]


def describe_complete(study: optuna.Study) -> str:
    """How many COMPLETE trials a study has and, under constraints, how many of them meet them: the same words
    wherever a command needs more of them (export, confirm)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if any(t.constraints for t in complete):
        feasible = sum(objectives.feasible(t) for t in complete)
        return f"{len(complete)} COMPLETE trial(s), {feasible} of them within the study's constraints"
    others = f" ({len(study.trials)} trial(s) in other states)" if not complete and study.trials else ""
    return f"{len(complete)} COMPLETE trial(s){others}"


def has_best(study: optuna.Study) -> bool:
    return bool(objectives.candidates(study))


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE for one objective and for several (Optuna's TPE is multi-objective too, and with a few dozen
    trials it learns faster than NSGA-II, whose populations need hundreds); under constraints, TPE models
    the feasible region from the constraint values each trial sets (Trial.set_constraint, Optuna 5)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: parallel workers see each other's running trials and spread out; alone it changes nothing.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(pruner: PrunerConfig) -> optuna.pruners.BasePruner:
    """Median by default; its warm-up keeps the first trials and epochs from being cut on noise."""
    if pruner.type == "median" and pruner.by == "fraction":
        return FractionMedianPruner(pruner.startup_trials, pruner.warmup_epochs)
    if pruner.type == "median":
        # Steps are 1-based epochs and Optuna prunes from step == n_warmup_steps on, hence the + 1.
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials,
                                           n_warmup_steps=pruner.warmup_epochs + 1)
    if pruner.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if pruner.type == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward the study's total: COMPLETE and PRUNED (FAIL ones are retried)."""
    return sum(t.state in COUNTED for t in study.get_trials(deepcopy=False))


def budget_left(study: optuna.Study, config: SweepConfig) -> tuple[int, float | None]:
    """Trials and seconds still owed to the study's totals, counting what earlier runs spent and the
    trials other workers are running now."""
    taken = sum(t.state in (*COUNTED, TrialState.RUNNING) for t in study.get_trials(deepcopy=False))
    n_left = max(config.study.n_trials - taken, 0)
    if config.study.timeout is None:
        return n_left, None
    # A trial whose process died is ended when someone notices (a heartbeat grace, or a rerun days later): its
    # start-to-end time is not time it spent, so it is left out (what it trained before dying is lost with it).
    spent = sum((t.datetime_complete - t.datetime_start).total_seconds()
                for t in study.get_trials(deepcopy=False)
                if t.datetime_complete and t.datetime_start and not died_elsewhere(t))
    return n_left, config.study.timeout - spent


def budget_spent(study: optuna.Study, config: SweepConfig) -> bool:
    n_left, time_left = budget_left(study, config)
    return n_left == 0 or (time_left is not None and time_left <= 0)
