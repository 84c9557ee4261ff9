"""`sweep list`: the studies of real stores, from tiny real sweeps (a confirmation, a sweep SIGKILLed mid-trial)
and, on PostgreSQL, trials written as other machines leave them (heartbeats fresh and stopped)."""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import socket
import subprocess
import sys
import time

import mlflow
import optuna
import pandas as pd
import psycopg
import pytest
from optuna.trial import TrialState

from pipeline import cli, keys, listing, report
from pipeline import stores as store_uris
from pipeline.config import load_sweep
from pipeline.processes import pid_alive
from pipeline.study import load_existing_study, optuna_storage

from conftest import ROOT, write_sweep


def _tiny(folder, data_dir, storage: str, tracking_uri: str, name: str, **changes):
    settings = dict(study__name=name, data__subset=300, data__test_subset=200, data__data_dir=str(data_dir),
                    study__storage=storage, tracking__tracking_uri=tracking_uri, search_space__epochs=1)
    return write_sweep(folder, name=f"{name}.yaml", **{**settings, **changes})


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_dir) -> dict:
    """A journal with two real studies: alpha (2 trials, its best confirmed with 2 seeds), then beta (1 trial, its
    own experiment name). Alpha's confirmation ran last, so alpha is the most recently active."""
    folder = tmp_path_factory.mktemp("listed")
    stores = {"storage": f"journal:///{folder}/optuna.journal", "tracking_uri": f"sqlite:///{folder}/mlflow.db"}
    alpha = _tiny(folder, data_dir, **stores, name="alpha", study__n_trials=2)
    beta = _tiny(folder, data_dir, **stores, name="beta", study__n_trials=1, tracking__experiment="beta-runs")
    for command in (["run", str(alpha)], ["run", str(beta)], ["confirm", str(alpha), "--top-k", "1", "--seeds", "2"]):
        assert cli.main([*command, "--no-progress"]) == 0
    return {**stores, "alpha": alpha, "folder": folder}


def _row(frame: pd.DataFrame, study: str) -> pd.Series:
    (index,) = frame.index[frame["study"] == study]
    return frame.loc[index]


def test_each_study_is_one_row_with_its_counts_best_and_confirmation(swept):
    frame = listing.list_studies(swept["storage"], swept["tracking_uri"])
    assert list(frame.columns) == list(listing.COLUMNS)
    assert list(frame["study"]) == ["alpha", "beta"], "one row per search study (no alpha:confirm), newest first"
    assert frame.attrs["warnings"] == []
    alpha, beta = _row(frame, "alpha"), _row(frame, "beta")
    assert (alpha["experiment"], beta["experiment"]) == ("fashion-mnist-smoke", "beta-runs")
    assert (alpha["metric"], alpha["complete"], beta["complete"]) == ("val_accuracy", 2, 1)
    assert [alpha[c] for c in ("pruned", "fail", "running", "waiting")] == [0, 0, 0, 0]
    assert alpha["running_now"] == beta["running_now"] == "no"
    assert alpha["last_activity"] > beta["last_activity"], "the confirmation's retraining counts as activity"

    config = load_sweep(swept["alpha"])
    trials = report.trials_table(load_existing_study(swept["storage"], "alpha"), config)
    best = trials[trials["best"] == "*"].iloc[0]
    assert (alpha["best"], alpha["best_trial"], alpha["test"]) == (best["val_accuracy"], best["trial"],
                                                                   best["test_accuracy"]), "the report's best"
    assert alpha["confirmed"].endswith(f"(trial {best['trial']}, 2 seeds)"), alpha["confirmed"]
    assert " ± " in alpha["confirmed"] and beta["confirmed"] == ""


def test_csv_parses_with_every_column_and_markdown_goes_to_out(swept, capsys, tmp_path):
    stores = ["--storage", swept["storage"], "--tracking-uri", swept["tracking_uri"]]
    assert cli.main(["list", *stores, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    frame = pd.read_csv(io.StringIO(captured.out))
    assert list(frame.columns) == list(listing.COLUMNS) and list(frame["study"]) == ["alpha", "beta"]
    assert frame["complete"].tolist() == [2, 1] and captured.err == ""
    out = tmp_path / "studies.md"
    assert cli.main(["list", *stores, "--format", "markdown", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text().startswith("| study | experiment |") and "| alpha | fashion-mnist-smoke |" in out.read_text()


def test_a_missing_tracking_store_leaves_test_blank_with_one_warning(swept, capsys):
    missing = swept["folder"] / "elsewhere.db"
    assert cli.main(["list", "--storage", swept["storage"], "--tracking-uri", f"sqlite:///{missing}"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"sweep: warning: no tracking store at "
                                                                     f"sqlite:///{missing}"), captured.err
    assert "the test column is left blank" in captured.err and "alpha" in captured.out
    frame = listing.list_studies(swept["storage"], f"sqlite:///{missing}")
    assert frame["test"].isna().all() and frame["best"].notna().all()
    assert not missing.exists(), "reading created no store"


def test_a_sqlite_file_without_studies_is_refused_and_left_as_it_is(swept, capsys):
    """The MLflow store passed as --storage by mistake: Optuna would add its tables to it as it opened it."""
    tracking_file = swept["folder"] / "mlflow.db"
    before = tracking_file.read_bytes()
    assert cli.main(["list", "--storage", f"sqlite:///{tracking_file}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a SQLite database without Optuna's tables, so no study storage" in err, err
    assert tracking_file.read_bytes() == before


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_missing_storage_is_refused_in_one_line_and_not_created(tmp_path, capsys, kind):
    path = tmp_path / ("optuna.journal" if kind == "journal" else "optuna.db")
    assert cli.main(["list", "--storage", f"{kind}:///{path}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no study storage at {kind}:///{path}: no sweep has run there" in err, err
    assert not path.exists()


def test_an_empty_storage_says_it_has_no_studies(tmp_path, capsys):
    journal = tmp_path / "optuna.journal"
    journal.touch()
    assert cli.main(["list", "--storage", f"journal:///{journal}"]) == 0
    assert capsys.readouterr().out == f"No studies in journal:///{journal}.\n"


def _running_trial(storage: str, study: str, process: subprocess.Popen, seconds: float = 180) -> pd.Series:
    """The study's row once a trial of it runs now (RUNNING, claimed by a live process), as `sweep list` reads it."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        if store_uris.local_path(store_uris.resolve_uri(storage)).exists():
            frame = listing.list_studies(storage, "sqlite:///nowhere/mlflow.db")
            if study in set(frame["study"]) and _row(frame, study)["running_now"].startswith("yes"):
                return _row(frame, study)
        time.sleep(0.5)
    pytest.fail("no trial started")


def test_a_trial_of_a_killed_sweep_is_listed_as_stale_not_running(tmp_path, data_dir):
    """While the sweep trains, its trial runs now (by its worker's pid); SIGKILLed, the trial stays RUNNING in the
    storage (listing writes nothing: the next run fails it), but no process runs it."""
    storage = f"journal:///{tmp_path}/optuna.journal"
    path = _tiny(tmp_path, data_dir, storage, f"sqlite:///{tmp_path}/mlflow.db", "gamma", study__n_trials=1,
                 data__subset=3000, search_space__epochs=30)
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        row = _running_trial(storage, "gamma", process)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
    (worker,) = optuna.load_study(study_name="gamma", storage=optuna_storage(storage)).get_trials(
        states=(TrialState.RUNNING,))
    pid = worker.user_attrs[keys.PID]
    assert row["running_now"] == f"yes: trial 0 (host {socket.gethostname()} pid {pid})"
    deadline = time.time() + 60
    while pid_alive(pid) and time.time() < deadline:  # the worker dies with its supervisor (PDEATHSIG)
        time.sleep(0.2)
    assert not pid_alive(pid), "the worker outlived its supervisor"
    journal = (tmp_path / "optuna.journal").read_bytes()
    row = _row(listing.list_studies(storage, f"sqlite:///{tmp_path}/mlflow.db"), "gamma")
    assert row["running_now"] == "no (trial 0 stale: its process died)" and row["running"] == 1
    assert (tmp_path / "optuna.journal").read_bytes() == journal, "listing wrote nothing"


def test_postgres_lists_heartbeats_fresh_and_stopped_and_a_study_not_from_sweep_run(new_database):
    """Trials as other machines leave them on a database server: one whose heartbeat is fresh runs now, one whose
    heartbeats stopped (aged in the database's own table) is stale; a study made with Optuna directly is marked."""
    url = new_database("optuna")
    study = optuna.create_study(study_name="plain", storage=optuna_storage(url), direction="minimize")
    for state, value in ((TrialState.COMPLETE, 0.7), (TrialState.COMPLETE, 0.5), (TrialState.PRUNED, None),
                         (TrialState.FAIL, None)):
        study.add_trial(optuna.trial.create_trial(state=state, value=value))
    study.enqueue_trial({})
    storage = study._storage
    running = []
    for pid in (111, 222):
        trial_id = storage.create_new_trial(study._study_id)
        for key, value in ((keys.HOST, "elsewhere"), (keys.PID, pid), (keys.HEARTBEATS, "database")):
            storage.set_trial_user_attr(trial_id, key, value)
        storage.record_heartbeat(trial_id)
        running.append(trial_id)
    with psycopg.connect(url) as database:
        database.execute("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 hour' WHERE trial_id = %s",
                         (running[1],))

    frame = listing.list_studies(url, "sqlite:///nowhere/mlflow.db")
    row = _row(frame, "plain")
    assert [row[c] for c in ("complete", "pruned", "fail", "running", "waiting")] == [2, 1, 1, 2, 1]
    assert (row["best"], row["best_trial"]) == (0.5, 1), "minimized"
    assert (row["experiment"], row["metric"], row["confirmed"]) == (listing.NOT_FROM_SWEEP, "", "")
    assert math.isnan(row["test"]) and len(frame.attrs["warnings"]) == 1
    assert row["running_now"] == ("yes: trial 5 (host elsewhere pid 111); trial 6 stale: its process stopped sending "
                                  "heartbeats")


def test_out_takes_its_format_from_the_suffix_and_replaces_only_an_earlier_listing(swept, tmp_path, capsys):
    """`--out list.csv` once wrote a text table into it, and `--out data.csv` replaced whatever was there."""
    stores = ["--storage", swept["storage"], "--tracking-uri", swept["tracking_uri"]]
    data = tmp_path / "data.csv"
    data.write_text("label,pixel_0\n3,0\n")
    assert cli.main(["list", *stores, "--out", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"--out {data}: exists and is a file that is not a report" in err and "left as it is" in err, err
    assert data.read_text() == "label,pixel_0\n3,0\n"

    out = tmp_path / "studies.csv"
    assert cli.main(["list", *stores, "--out", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == list(listing.COLUMNS), "CSV, as the suffix says"
    for name, first in (("studies.md", "| study | experiment | metric |"), ("studies.markdown", "| study |"),
                        ("studies.txt", "study")):
        assert cli.main(["list", *stores, "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_text().lstrip().startswith(first), name
    empty = tmp_path / "empty.journal"
    empty.touch()
    for command in (["--storage", f"journal:///{empty}", "--format", "table"], [*stores, "--format", "markdown"],
                    [*stores, "--format", "table"], [*stores]):  # each replaces the listing before it
        assert cli.main(["list", *command, "--out", str(out)]) == 0, capsys.readouterr().err
    assert list(pd.read_csv(out).columns) == list(listing.COLUMNS)


def test_blanks_are_empty_cells_in_the_table_and_markdown(tmp_path, capsys):
    """A study made with Optuna directly, its one trial failed: no best, no best trial, no test metric."""
    storage = f"journal:///{tmp_path}/optuna.journal"
    study = optuna.create_study(study_name="plain", storage=optuna_storage(storage))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    command = ["list", "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    for fmt in ("table", "markdown"):
        assert cli.main([*command, "--format", fmt]) == 0
        shown = capsys.readouterr().out
        assert "plain" in shown and not {"NaN", "nan", "<NA>", "None"} & set(shown.replace("|", " ").split()), shown
    assert cli.main([*command, "--format", "csv"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (row["study"], row["fail"]) == ("plain", "1") and row["best"] == row["best_trial"] == row["test"] == ""


def _table_count(url: str) -> int:
    with psycopg.connect(url) as database:
        return database.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                                ).fetchone()[0]


def test_a_database_without_optuna_tables_is_refused_and_left_as_it_is(new_database, capsys):
    """An empty database, and MLflow's passed as --storage by mistake: Optuna created its tables in them as it opened
    them (and in MLflow's then failed on the schema version they share a table for)."""
    empty, tracking_store = new_database("empty"), new_database("mlflow")
    mlflow.MlflowClient(tracking_store).search_experiments()  # MLflow creates its tables
    counts = {url: _table_count(url) for url in (empty, tracking_store)}
    assert counts[empty] == 0 and counts[tracking_store] > 0
    for url in (empty, tracking_store):
        assert cli.main(["list", "--storage", url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a database without Optuna's tables, so no study storage (an MLflow" in err, err
        assert _table_count(url) == counts[url], "nothing was created"
