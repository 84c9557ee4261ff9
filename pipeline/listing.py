"""`sweep list`: the studies in a storage, one row each: their tracking experiment, trials by state, best and
confirmed results, last activity, and whether a live process runs one of their trials now.

It only reads: a missing store is refused rather than created, a journal cut off by a crash is read as Optuna
reads it (its unfinished last line ignored) and not repaired, and a dead process's trial is reported as stale,
not failed (the next `sweep run` or `sweep confirm` on the study fails it and runs it again).
"""

from __future__ import annotations

import contextlib
import math
import socket
import sqlite3
from datetime import timezone
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from pipeline import confirmation, keys, objectives, storages, stores, tracking
from pipeline.config import SweepConfig, parse_sweep_text
from pipeline.errors import BadInputError, TrackingError
from pipeline.processes import pid_alive
from pipeline.study import (DIED, STOPPED_HEARTBEATS, StudyNotFound, optuna_storage, stale_trial_ids,
                            storage_errors, watched_by_heartbeat)

COLUMNS = ("study", "experiment", "metric", "complete", "pruned", "fail", "running", "waiting", "best", "best_trial",
           "test", "confirmed", "last_activity", "running_now")
COUNTS = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL,
          "running": TrialState.RUNNING, "waiting": TrialState.WAITING}
NOT_FROM_SWEEP = "(not from `sweep run`)"  # the experiment column of a study created some other way
UNREADABLE = "(its stored sweep file no longer validates)"
NO_STUDIES = "No studies in"  # what a storage without studies is listed as, but in CSV
OPTUNA_TABLES = {"studies", "version_info"}  # a database holding these is a study storage


def list_studies(storage: str, tracking_uri: str) -> pd.DataFrame:
    """One row per search study in `storage` (COLUMNS), its confirmation folded into its row, the most recently
    active first. A tracking store that cannot be read leaves `test` blank and says why in
    `frame.attrs["warnings"]` (one line each, for the CLI's stderr)."""
    url, backend = _open_existing(storage)
    with storage_errors(url):
        studies = {name: optuna.load_study(study_name=name, storage=backend)
                   for name in optuna.get_all_study_names(backend)}
    problem = _tracking_problem(tracking_uri) if studies else None
    test_uri = None if problem else tracking_uri
    rows = [_row(study, studies.get(confirmation.study_name(name)), url, test_uri)
            for name, study in studies.items() if not _is_confirmation(name, studies)]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "_latest"])
    frame = frame.sort_values(["_latest", "study"], ascending=[False, True], na_position="last", kind="stable")
    frame = frame.drop(columns="_latest").reset_index(drop=True).astype({"best_trial": "Int64"})
    frame.attrs["warnings"] = [problem] if problem else []
    return frame


def _open_existing(storage: str) -> tuple[str, optuna.storages.BaseStorage]:
    """The storage's resolved URL and backend; a journal or SQLite file that is not there is refused, not created
    (Optuna would create an empty one)."""
    url = stores.resolve_uri(storage, create=False)
    path = stores.local_path(url)
    if path is not None and path.is_dir():
        raise BadInputError(f"--storage {url}: {path} is a folder; pass the study storage file inside it, e.g. "
                            f"journal:///{path / 'optuna.journal'}")
    if path is not None and not path.is_file():
        raise StudyNotFound(f"no study storage at {url}: no sweep has run there; pass the --storage a sweep ran "
                            "with (its sweep file's study.storage)")
    if stores.is_sqlite(url):
        _check_optuna_tables(url, path)
    elif storages.is_database_server(url):
        _check_server_tables(url)
    return url, optuna_storage(url)


def _check_optuna_tables(url: str, path: Path) -> None:
    """Refuse a SQLite file that holds no studies (an MLflow store passed by mistake, say): Optuna would add its
    tables to it as it opens it. Read through a read-only connection, which can write nothing."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as database:
            tables = {name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise BadInputError(f"--storage {url}: cannot be read as a SQLite database ({exc}); pass the study storage "
                            "a sweep ran with") from None
    if not OPTUNA_TABLES <= tables:
        raise BadInputError(f"--storage {url}: a SQLite database without Optuna's tables, so no study storage (an "
                            "MLflow tracking store?); pass the study storage a sweep ran with")


def _check_server_tables(url: str) -> None:
    """Refuse a server's database that holds no studies (an empty one, MLflow's): Optuna would create its tables in
    it as it opens it, and on MLflow's then fail on the schema version they share a table for. SQLAlchemy's
    inspector only reads the database's catalogue."""
    import sqlalchemy

    with storage_errors(url):
        engine = sqlalchemy.create_engine(url)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    if not OPTUNA_TABLES <= tables:
        raise BadInputError(f"--storage {stores.printable(url)}: a database without Optuna's tables, so no study "
                            "storage (an MLflow tracking store?); pass the study storage a sweep ran with")


def _is_confirmation(name: str, studies: dict) -> bool:
    """A confirmation's retrainings (`<study>:confirm`), shown in its search study's row."""
    return name.endswith(confirmation.SUFFIX) and name[:-len(confirmation.SUFFIX)] in studies


def _tracking_problem(tracking_uri: str) -> str | None:
    """Why the tracking store cannot give the best trials' test metrics (missing, not a store, a server down, a
    URI MLflow cannot use), as the API's readers check it."""
    try:
        tracking.check_readable(tracking_uri)
    except TrackingError as exc:
        return f"{str(exc).removesuffix(' Nothing was trained.').rstrip('.')}; the test column is left blank"
    return None


def _row(study: optuna.Study, confirmed: optuna.Study | None, url: str, tracking_uri: str | None) -> dict:
    """The study's columns; what the storage says read under storage_errors (a database lost meanwhile is one
    line naming it), the test metric from the tracking store after."""
    with storage_errors(url):
        config, marker = _stored_config(study)
        found = objectives.candidates(study)
        row = _from_storage(study, confirmed)
    best = found[0] if found else None
    return {**row, "experiment": config.experiment_name if config else marker,
            "metric": config.study.metric if config else "", "best": objectives.value(best) if best else math.nan,
            "best_trial": best.number if best else None, "test": _test(best, config, tracking_uri)}


def _from_storage(study: optuna.Study, confirmed: optuna.Study | None) -> dict:
    """Trials by state, the confirmed winner, the latest trial start or end (`_latest`, to sort by) and who runs
    a trial now, the confirmation's trials counting for the last two."""
    trials = study.get_trials(deepcopy=False)
    done = [*trials, *(confirmed.get_trials(deepcopy=False) if confirmed else [])]
    latest = max((t.datetime_complete or t.datetime_start for t in done if t.datetime_start), default=None)
    latest = latest.astimezone(timezone.utc) if latest else None  # Optuna keeps this machine's local time
    return {"study": study.study_name, **{column: sum(t.state == state for t in trials)
                                          for column, state in COUNTS.items()},
            "confirmed": _confirmed(study, confirmed), "_latest": latest,
            "last_activity": latest.strftime("%Y-%m-%dT%H:%M:%SZ") if latest else "",
            "running_now": _running_now([("trial", study), ("confirmation trial", confirmed)])}


def _stored_config(study: optuna.Study) -> tuple[SweepConfig | None, str]:
    """The sweep file the study last ran with, or why there is none to read (a study made by other means)."""
    text = study.user_attrs.get(keys.SWEEP_FILE)
    if text is None:
        return None, NOT_FROM_SWEEP
    try:
        return parse_sweep_text(text, Path(f"<sweep file of study '{study.study_name}'>")), ""
    except BadInputError:
        return None, UNREADABLE


def _test(best: FrozenTrial | None, config: SweepConfig | None, tracking_uri: str | None) -> float:
    """The best trial's headline test metric from its MLflow run (the test set only reported, never chosen on)."""
    if best is None or config is None or tracking_uri is None:
        return math.nan
    return tracking.test_metric(tracking_uri, best.user_attrs.get(keys.RUN_ID), config.test_metric)


def _confirmed(study: optuna.Study, confirmed: optuna.Study | None) -> str:
    """The confirmed winner: its mean ± sd of the study's objective over its seeds so far (`sweep report` has the
    whole confirmation table)."""
    found = confirmation.results(study, confirmed, lambda run_id: math.nan) if confirmed else []
    if not found:
        return ""
    winner = found[0]
    repeats = {t.user_attrs.get(keys.REPEAT) for t in confirmed.get_trials(deepcopy=False)
               if t.user_attrs.get(keys.SOURCE_TRIAL) == winner.trial_number}
    seeds, planned = len(winner.values), len(repeats) + 1
    counted = f"{seeds} seeds" if seeds == planned else f"{seeds} of {planned} seeds"
    return (f"{objectives.shown(winner.mean)} ± {objectives.shown(winner.std)} "
            f"(trial {winner.trial_number}, {counted})")


def _running_now(labelled: list[tuple[str, optuna.Study | None]]) -> str:
    """`yes: trial 5 (host h pid p)` while a live process runs one of the study's (or its confirmation's) trials;
    `no (trial 3 stale: its process died)` when only a dead process's trial is left RUNNING."""
    live, dead, unknown = [], [], []
    for label, study in labelled:
        if study is None:
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale = set(stale_trial_ids(study) if running else ())
        for trial in running:
            state, said = _liveness(study, trial, stale)
            {"live": live, "dead": dead, "unknown": unknown}[state].append(f"{label} {trial.number} {said}")
    others = "; ".join([*dead, *unknown])
    if live:
        return f"yes: {', '.join(live)}" + (f"; {others}" if others else "")
    if unknown:
        return f"unknown: {others}"
    return f"no ({others})" if dead else "no"


def _liveness(study: optuna.Study, trial: FrozenTrial, stale: set[int]) -> tuple[str, str]:
    """Whether a RUNNING trial's process lives, as `sweep run` tells it before it fails a dead one
    (pipeline.study.fail_dead_trials): on this machine by its pid, on another by its heartbeats where this
    storage has them; otherwise nobody here can tell."""
    host, pid = trial.user_attrs.get(keys.HOST), trial.user_attrs.get(keys.PID)
    if host is None:
        return "unknown", "(its process is not recorded)"
    if host == socket.gethostname():
        return ("live", f"(host {host} pid {pid})") if pid_alive(pid) else ("dead", f"stale: {DIED}")
    if not watched_by_heartbeat(study, trial):
        return "unknown", f"(host {host} pid {pid}: no heartbeats this storage keeps tell)"
    if trial._trial_id in stale:
        return "dead", f"stale: {STOPPED_HEARTBEATS}"
    return "live", f"(host {host} pid {pid})"


def format_studies(frame: pd.DataFrame, fmt: str, storage: str) -> str:
    """`sweep list`'s text in `fmt` (table, csv, markdown), ending in one newline; a storage without studies said
    in a line, but in CSV, which keeps its header row for scripts."""
    from pipeline.report import format_table

    if frame.empty and fmt != "csv":
        return f"{NO_STUDIES} {stores.printable(storage)}.\n"
    return format_table(frame if fmt == "csv" else _blanked(frame), fmt).rstrip("\n") + "\n"


def _blanked(frame: pd.DataFrame) -> pd.DataFrame:
    """The table and markdown forms' cells: a blank empty, not NaN, <NA> or None; a number to four significant
    digits, as `sweep report` shows one (CSV leaves both to the reader)."""
    return frame.map(lambda value: "" if pd.isna(value) else f"{value:.4g}" if isinstance(value, float) else value)
