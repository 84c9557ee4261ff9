"""The Python API (pipeline.api.Sweep) on tiny real studies: what it returns matches what the `sweep` commands
print, its errors are the CLI's (never SystemExit), and a stop signal in a plain script ends cleanly."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

import pipeline
from pipeline import (BadInputError, Comparison, Exported, StudyError, Sweep, SweepConfigError, SweepError,
                      TrackingError, cli, keys)
from pipeline import stores as store_uris
from pipeline.study import optuna_storage
from pipeline.supervisor import interrupted

from conftest import ROOT, SWEEPS, write_sweep

SMOKE = yaml.safe_load((SWEEPS / "smoke.yaml").read_text())
NAME = SMOKE["study"]["name"]
SECOND = "api-second"


def tiny_spec(data_dir, storage: str, tracking_uri: str) -> dict:
    """smoke.yaml as a dict, shrunk to three tiny trials; NumPy scalars, arrays and tuples, as a notebook would
    write them."""
    spec = copy.deepcopy(SMOKE)
    spec["study"].update(n_trials=np.int64(3), storage=storage)
    spec["data"].update(subset=np.int64(600), test_subset=300, data_dir=str(data_dir),
                        validation_fraction=np.float64(0.2))
    spec["tracking"]["tracking_uri"] = tracking_uri
    spec["search_space"]["activation"]["choices"] = ("relu", "tanh")
    spec["search_space"]["optimizer"]["choices"] = np.array(["adam", "rmsprop"])
    return spec


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def module_stores(folder) -> dict[str, str]:
    return {"storage": f"journal:///{folder}/optuna.journal", "tracking_uri": f"sqlite:///{folder}/mlflow.db"}


@pytest.fixture(scope="module")
def swept(folder, data_dir, module_stores):
    """One dict sweep, run by the API, that the module's tests read; `file` holds the YAML it was kept as, for
    the CLI to run the same study."""
    sweep = Sweep.from_dict(tiny_spec(data_dir, **module_stores))
    outcome = sweep.run(progress=False)
    file = folder / "kept.yaml"
    file.write_text(sweep.config.text)
    return {"sweep": sweep, "outcome": outcome, "file": file}


@pytest.fixture(scope="module")
def second(folder, data_dir, module_stores):
    """A second study in the same stores, from a file whose settings the overrides replace: four trials of
    which the 1e-7 learning rates are pruned (as in tests/test_pruning.py), then the confirmation it asks for."""
    path = write_sweep(folder, name="second.yaml", study__name=SECOND, study__n_trials=1, study__sampler="random",
                       study__seed=7, study__pruner={"type": "median", "startup_trials": 1, "warmup_epochs": 0},
                       study__confirm={"top_k": 1, "seeds": 2}, tracking__experiment=SECOND, data__subset=600,
                       data__test_subset=300, search_space__epochs=3,
                       search_space__learning_rate={"type": "categorical", "choices": [0.003, 1e-7]})
    sweep = Sweep.from_file(path, n_trials=4, data_dir=data_dir, **module_stores)
    outcome = sweep.run(progress=False)
    assert outcome.new_trials == 4 and len(outcome.confirmation.results) == 1
    return sweep


def test_importing_pipeline_loads_no_heavy_library():
    heavy = ("tensorflow", "keras", "optuna", "mlflow", "pandas")
    code = f"import sys, pipeline; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_dict_is_validated_exactly_as_a_file_is(tmp_path, data_dir, stores):
    spec = tiny_spec(data_dir, **stores)
    spec["study"]["n_trail"] = 3
    with pytest.raises(SweepConfigError) as from_dict:
        Sweep.from_dict(spec)
    path = tmp_path / "typo.yaml"
    plain = json.loads(json.dumps(spec, default=lambda value: value.tolist()))  # the NumPy values as a file has them
    path.write_text(yaml.safe_dump(plain, sort_keys=False))
    with pytest.raises(SweepConfigError) as from_file:
        Sweep.from_file(path)
    assert "<sweep dict>" in str(from_dict.value) and "n_trail" in str(from_dict.value)
    assert str(from_dict.value).replace("<sweep dict>", str(path)) == str(from_file.value)


def test_a_dict_refuses_what_is_not_plain_data_by_its_key(data_dir, stores):
    spec = tiny_spec(data_dir, **stores)
    spec["search_space"]["units"] = {"type": "int", "low": object(), "high": 128}
    with pytest.raises(SweepConfigError, match=r"<sweep dict>: search_space\.units\.low: object .* is not plain data"):
        Sweep.from_dict(spec)
    with pytest.raises(SweepConfigError, match="a sweep is a dict of sections"):
        Sweep.from_dict([("study", {})])


def test_numpy_scalars_and_tuples_read_as_the_file_s_numbers_and_lists(tmp_path, data_dir, stores):
    spec = tiny_spec(data_dir, **stores)
    path = write_sweep(tmp_path, study__n_trials=3, study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"], data__subset=600, data__test_subset=300,
                       data__data_dir=str(data_dir))
    from_dict, from_file = Sweep.from_dict(spec).config, Sweep.from_file(path).config
    assert from_dict.search_space == from_file.search_space
    assert from_dict.data == from_file.data and from_dict.study == from_file.study
    kept = yaml.safe_load(from_dict.text)["search_space"]
    assert kept["activation"]["choices"] == ["relu", "tanh"] and kept["optimizer"]["choices"] == ["adam", "rmsprop"]


def test_a_dict_sweep_runs_and_its_study_keeps_the_yaml(swept, module_stores):
    sweep, outcome = swept["sweep"], swept["outcome"]
    assert outcome.new_trials == 3 and outcome.finished_trials == 3 and outcome.best is not None
    study = optuna.load_study(study_name=NAME, storage=optuna_storage(module_stores["storage"]))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    kept = study.user_attrs[keys.SWEEP_FILE]
    assert kept == sweep.config.text and yaml.safe_load(kept)["data"]["subset"] == 600
    parent = study.user_attrs[keys.PARENT_RUN_ID]
    client = mlflow.MlflowClient(store_uris.resolve_uri(module_stores["tracking_uri"]))
    local = client.download_artifacts(parent, f"{keys.SWEEP_DIR}/sweep.yaml", str(swept["file"].parent))
    with open(local) as logged:
        assert logged.read() == kept


def test_from_study_needs_no_file(swept, module_stores):
    again = Sweep.from_study(NAME, **module_stores)
    assert again.config.search_space == swept["sweep"].config.search_space
    pd.testing.assert_frame_equal(again.trials(), swept["sweep"].trials())
    assert again.best() == swept["sweep"].best()


def test_from_file_applies_and_validates_the_command_line_s_overrides(tmp_path, data_dir, stores):
    path = write_sweep(tmp_path)
    sweep = Sweep.from_file(path, n_trials=5, timeout=30, data_dir=data_dir, workers=2,
                            storage=f"journal:///{tmp_path}/j.journal", tracking_uri=stores["tracking_uri"])
    config = sweep.config
    assert (config.study.n_trials, config.study.timeout, config.data.data_dir) == (5, 30, str(data_dir))
    assert config.study.storage == f"journal:///{tmp_path}/j.journal"
    assert config.tracking.tracking_uri == stores["tracking_uri"] and sweep.workers == 2
    with pytest.raises(SweepConfigError, match="--n-trials"):
        Sweep.from_file(path, n_trials=0)
    with pytest.raises(SweepConfigError, match="--timeout"):
        Sweep.from_file(path, timeout=-1)
    with pytest.raises(SweepConfigError, match="--workers: must be at least 1, got 0"):
        Sweep.from_file(path, workers=0)
    for workers in (True, 1.5, 1.0):
        with pytest.raises(SweepConfigError, match=f"--workers: must be a whole number, got {workers}"):
            Sweep.from_file(path, workers=workers)
    for option, key in (("--storage", "storage"), ("--tracking-uri", "tracking_uri"), ("--data-dir", "data_dir")):
        with pytest.raises(SweepConfigError, match=f"{option}: must be a non-empty string, got 5"):
            Sweep.from_file(path, **{key: 5})


def test_a_second_run_of_a_settled_study_says_what_the_cli_says(swept, capsys):
    again = swept["sweep"].run(progress=False)
    assert again.new_trials == 0 and again.finished_trials == 3
    capsys.readouterr()
    assert cli.main(["run", str(swept["file"]), "--no-progress"]) == 0
    assert capsys.readouterr().out == f"{again}\n"


def test_trials_is_the_csv_report(swept, capsys):
    capsys.readouterr()
    assert cli.main(["report", str(swept["file"]), "--format", "csv"]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    trials = swept["sweep"].trials()
    assert list(trials.columns) == list(printed.columns)
    assert trials["trial"].tolist() == printed["trial"].tolist() and len(trials) == 3
    for name in trials.columns:
        ours, theirs = trials[name], printed[name]
        if pd.api.types.is_numeric_dtype(theirs):
            assert np.allclose(ours.astype(float), theirs.astype(float), equal_nan=True), name
        else:
            assert ours.fillna("").astype(str).tolist() == theirs.fillna("").astype(str).tolist(), name


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_report_is_the_report_command_s_text(swept, capsys, monkeypatch, fmt):
    monkeypatch.setenv("COLUMNS", "100")
    capsys.readouterr()
    assert cli.main(["report", str(swept["file"]), "--format", fmt]) == 0
    assert capsys.readouterr().out == swept["sweep"].report(fmt, 100) + "\n"


def test_best_is_the_starred_trial_and_what_export_ships(swept, folder, capsys):
    sweep = swept["sweep"]
    best, trials = sweep.best(), sweep.trials()
    (starred,) = trials[trials["best"] == "*"].itertuples()
    assert best.trial == starred.trial == trials.loc[0, "trial"] and best.run_id == starred.run_id
    assert best.value == pytest.approx(starred.val_accuracy) and best.metric == "val_accuracy"
    assert best.test["test_accuracy"] == pytest.approx(starred.test_accuracy) and best.confirmed is None
    assert best.params == sweep.study().trials[best.trial].user_attrs[keys.PARAMS]
    assert str(best).startswith(f"trial {best.trial}: val_accuracy {best.value:.4f}")

    exported = sweep.export(folder / "export")
    assert isinstance(exported, Exported) and exported.info["trial_number"] == best.trial
    assert json.loads((folder / "export" / "metadata.json").read_text()) == exported.info
    assert (folder / "export" / "model.keras").is_file() and (folder / "export" / "saved_model").is_dir()
    capsys.readouterr()
    assert cli.main(["export", str(swept["file"]), "--out", str(folder / "cli-export")]) == 0
    printed = capsys.readouterr().out
    version = json.loads((folder / "cli-export" / "metadata.json").read_text())["mlflow"]["version"]
    expected = str(exported).replace(str(folder / "export"), str(folder / "cli-export")).replace(
        f"version {exported.info['mlflow']['version']} ", f"version {version} ")
    assert printed == expected + "\n"


def test_history_has_one_row_per_epoch_run(swept):
    sweep = swept["sweep"]
    trials = sweep.trials()
    for number in (None, *trials["trial"]):
        history = sweep.history(number)
        row = trials[trials["trial"] == (sweep.best().trial if number is None else number)].iloc[0]
        assert history.index.name == "epoch" and list(history.index) == list(range(1, int(row.epochs_run) + 1))
        assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.columns)
        assert history["val_accuracy"].iloc[-1] == pytest.approx(row.val_accuracy)


def test_load_model_predicts_raw_test_images_above_chance(swept):
    sweep = swept["sweep"]
    splits = sweep.data()
    images, labels = splits.x_test[:200], splits.y_test[:200]
    assert images.dtype == np.uint8 and len(splits.class_names) == 10
    other = sweep.trials()["trial"].iloc[-1]  # NumPy's int64, as a notebook reads it from the table
    assert other != sweep.best().trial
    for model in (sweep.load_model(), sweep.load_model(other)):
        probabilities = model.predict(images, verbose=0)
        assert probabilities.shape == (200, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
        assert (probabilities.argmax(axis=1) == labels).mean() > 0.3, "chance is 0.1"


@pytest.mark.parametrize("trial", [3, 99, -1, True, "0", 1.0])
def test_load_model_of_a_trial_the_study_lacks_names_its_trials(swept, trial):
    with pytest.raises(BadInputError, match=f"study '{NAME}' has trials 0 to 2"):
        swept["sweep"].load_model(trial)
    with pytest.raises(BadInputError, match="has trials 0 to 2"):
        swept["sweep"].history(trial)


def test_load_model_of_a_pruned_trial_is_refused(second):
    pruned = [t.number for t in second.study().trials if t.state == TrialState.PRUNED]
    assert pruned, [t.params for t in second.study().trials]
    with pytest.raises(BadInputError, match=f"trial {pruned[0]} of study '{SECOND}' is PRUNED: only a COMPLETE"):
        second.load_model(pruned[0])
    assert len(second.history(pruned[0])) < 3, "a pruned trial's curves stop where it was cut"


def test_overrides_given_to_a_run_are_what_the_study_ran_with(second, data_dir, module_stores):
    """The file says one trial and names no data or stores; the study ran four on the given data and stores,
    and a sweep built from its stored file alone finds that data again."""
    assert len(second.study().trials) == 4
    stored = Sweep.from_study(SECOND, **module_stores)
    assert stored.config.data.data_dir is None
    splits = stored.data()
    assert len(splits.x_test) == 300 and splits.x_test.dtype == np.uint8
    assert np.array_equal(splits.x_test, second.data().x_test)


def test_a_run_that_confirms_says_what_the_cli_says(second, folder, data_dir, module_stores, capsys):
    again = second.run(progress=False)
    assert again.new_trials == 0 and again.confirmation is not None
    assert str(again) == f"{again.summary}\n\n{again.confirmation}"
    capsys.readouterr()
    assert cli.main(["run", str(folder / "second.yaml"), "--n-trials", "4", "--data-dir", str(data_dir), "--storage",
                     module_stores["storage"], "--tracking-uri", module_stores["tracking_uri"], "--no-progress"]) == 0
    assert capsys.readouterr().out == f"{again}\n"
    best = second.best()
    assert best.confirmed is not None and len(best.confirmed.values) == 2
    assert best.trial == again.confirmation.results[0].trial_number


def test_compare_with_a_sweep_a_study_name_and_a_file(swept, second, folder):
    sweep = swept["sweep"]
    by_sweep = sweep.compare(second)
    assert isinstance(by_sweep, Comparison) and by_sweep.warning is None, "same data, same digest"
    assert by_sweep.a.name == NAME and by_sweep.b.name == SECOND
    assert NAME in by_sweep.text and SECOND in by_sweep.text and str(by_sweep) == by_sweep.text
    assert sweep.compare(SECOND).text == by_sweep.text
    own = yaml.safe_load(second.config.text)  # the second study's file, now naming its stores itself
    own["study"]["storage"] = second.config.study.storage
    own["tracking"]["tracking_uri"] = second.config.tracking.tracking_uri
    path = folder / "own-stores.yaml"
    path.write_text(yaml.safe_dump(own))
    assert sweep.compare(str(path)).text == sweep.compare(path).text == by_sweep.text


def _bad_calls(swept, module_stores, tmp_path):
    """(what the API is called with, the CLI's arguments for the same mistake)."""
    missing = tmp_path / "missing.yaml"
    never = write_sweep(tmp_path, study__storage=f"sqlite:///{tmp_path}/none.db")
    sweep = swept["sweep"]
    return [
        (lambda: Sweep.from_file(missing), ["run", str(missing)]),
        (lambda: Sweep.from_file("no-such-example"), ["run", "no-such-example"]),
        (lambda: Sweep.from_study("never-ran", **module_stores),
         ["report", "--study", "never-ran", "--storage", module_stores["storage"]]),
        (lambda: sweep.export(tmp_path / "out", max_params=-1),
         ["export", str(swept["file"]), "--out", str(tmp_path / "out"), "--max-params", "-1"]),
        (lambda: sweep.export(tmp_path / "out", max_latency_ms=-0.5),
         ["export", str(swept["file"]), "--out", str(tmp_path / "out"), "--max-latency-ms", "-0.5"]),
        (lambda: Sweep.from_file(never).trials(), ["report", str(never)]),
        (lambda: Sweep.from_file(never).best(), ["export", str(never), "--out", str(tmp_path / "out")]),
        (lambda: Sweep.from_file(swept["file"], workers=2, storage=f"sqlite:///{tmp_path}/s.db").run(),
         ["run", str(swept["file"]), "--workers", "2", "--storage", f"sqlite:///{tmp_path}/s.db"]),
    ]


def test_errors_are_the_cli_s_exit_status_and_message_never_system_exit(swept, module_stores, tmp_path, capsys):
    for call, argv in _bad_calls(swept, module_stores, tmp_path):
        try:
            call()
        except SweepError as error:
            raised = error
        else:
            pytest.fail(f"no error for {argv}")
        capsys.readouterr()
        assert cli.main(argv) == raised.exit_code, argv
        assert capsys.readouterr().err == f"sweep: error: {raised}\n", argv
    with pytest.raises(BadInputError, match="format 'xml': choose one of table, csv, markdown"):
        swept["sweep"].report(fmt="xml")
    for limits, message in (({"max_params": 1.5}, "--max-params: must be a whole number, got 1.5"),
                            ({"max_params": True}, "--max-params: must be a whole number, got True"),
                            ({"max_model_mb": "1"}, "--max-model-mb: must be a number, got '1'")):
        with pytest.raises(SweepConfigError, match=message):  # what argparse's types keep from the CLI
            swept["sweep"].export(tmp_path / "out", **limits)
    with pytest.raises(StudyError, match="no study named 'never-ran'"):
        Sweep.from_study("never-ran", **module_stores)


def test_confirm_retrains_the_best_and_best_then_names_its_seeds(swept):
    """Last of the module: the confirmation changes what best() and export choose."""
    sweep = swept["sweep"]
    confirmation = sweep.confirm(top_k=1, seeds=2, progress=False)
    (result,) = confirmation.results
    assert len(result.values) == 2 and result.trial_number == swept["outcome"].best.number
    assert str(confirmation) == confirmation.summary and str(confirmation)
    best = sweep.best()
    assert best.confirmed is not None and best.confirmed.values == result.values
    assert best.trial == result.trial_number and best.run_id in result.run_ids
    assert "confirmed over 2 seeds" in str(best)
    splits = sweep.data()  # the shipped seed's model, which may be a retraining's
    probabilities = sweep.load_model().predict(splits.x_test[:200], verbose=0)
    assert (probabilities.argmax(axis=1) == splits.y_test[:200]).mean() > 0.3
    assert sweep.history()["val_accuracy"].iloc[-1] == pytest.approx(best.value)


EARLY_SCRIPT = """
import multiprocessing, sys
from pipeline import Sweep

if __name__ == "__main__":
    try:
        Sweep.from_file(sys.argv[1]).run(progress=False)
    except KeyboardInterrupt as stopped:
        print("stopped by", type(stopped).__name__)
    print("children", len(multiprocessing.active_children()))
"""


def _worker_catching_ctrl_c(parent: int) -> bool:
    """Whether process `parent` has a worker that has taken Ctrl-C over (it starts ignoring it), read from
    /proc: from then on until its data is loaded, a Ctrl-C ends its start-up."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/status") as status:
                caught = next(line for line in status if line.startswith("SigCgt:"))
            if ppid == parent and int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)):
                return True
        except (OSError, ValueError, IndexError, StopIteration):
            continue  # not a process, or one that ended as we read it
    return False


def test_ctrl_c_while_the_workers_start_is_an_interrupt_not_a_worker_failure(tmp_path, data_dir, stores):
    """Before any trial (the workers still load TensorFlow and the data): a KeyboardInterrupt, where the
    workers' clean exit was once reported as 'worker 0 exited with status 0 while starting'."""
    path = write_sweep(tmp_path, study__n_trials=1, data__subset=300, data__test_subset=100,
                       data__data_dir=str(data_dir), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"])
    process = _start_script(tmp_path, EARLY_SCRIPT, path)
    try:
        deadline = time.time() + 120
        while not _worker_catching_ctrl_c(process.pid):
            assert process.poll() is None and time.time() < deadline, process.communicate()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err
    assert "stopped by KeyboardInterrupt" in out and "children 0" in out, (out, err)
    assert "SweepError" not in err and "while starting" not in err, err


SCRIPT = """
import multiprocessing, sys
from pipeline import Sweep, SweepInterrupted

if __name__ == "__main__":
    try:
        Sweep.from_file(sys.argv[1]).run(progress=False)
    except SweepInterrupted as stopped:
        print("exit_code", stopped.exit_code)
        print("message", stopped.outcome.message)
        print("children", len(multiprocessing.active_children()))
        sys.exit(stopped.exit_code)
    print("finished without an interrupt")
"""


def _start_script(tmp_path, text: str, sweep_file) -> subprocess.Popen:
    """A Python script running the sweep file, in its own process group (as a terminal's foreground job)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text))
    return subprocess.Popen([sys.executable, str(script), str(sweep_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _running_trial(storage: str, process: subprocess.Popen, seconds: float = 300) -> optuna.trial.FrozenTrial:
    """The study's first RUNNING trial once its MLflow run has started, read from the storage."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        if store_uris.local_path(store_uris.resolve_uri(storage)).exists():
            try:
                study = optuna.load_study(study_name=NAME, storage=optuna_storage(storage))
                running = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if keys.RUN_ID in t.user_attrs]
                if running:
                    return running[0]
            except KeyError:
                pass  # the study is being created as we look
        time.sleep(0.5)
    pytest.fail("no trial started")


@pytest.mark.slow
def test_ctrl_c_in_a_plain_script_raises_sweep_interrupted_after_the_workers_end(tmp_path, data_dir, stores):
    path = write_sweep(tmp_path, study__n_trials=2, search_space__epochs=8, data__subset=3000,
                       data__test_subset=200, data__data_dir=str(data_dir), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"])
    process = _start_script(tmp_path, SCRIPT, path)
    try:
        trial = _running_trial(stores["storage"], process)
        time.sleep(1)  # into its training
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole foreground group
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "exit_code 130" in out and "children 0" in out, out
    assert f"message interrupted (Ctrl-C): trial {trial.number} was marked FAIL" in out, out
    assert "Traceback" not in err, err
    study = optuna.load_study(study_name=NAME, storage=optuna_storage(stores["storage"]))
    assert study.trials[trial.number].state == TrialState.FAIL
    client = mlflow.MlflowClient(store_uris.resolve_uri(stores["tracking_uri"]))
    assert client.get_run(trial.user_attrs[keys.RUN_ID]).info.status == "KILLED"
    with pytest.raises(ProcessLookupError):
        os.kill(trial.user_attrs[keys.PID], 0)
    after = Sweep.from_study(NAME, **stores)
    with pytest.raises(BadInputError, match=f"trial {trial.number} of study '{NAME}' is FAIL"):
        after.load_model(trial.number)


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path, data_dir, stores):
    """Workers start fresh and import the script that made them: an unguarded sweep would start again inside
    each; it is refused there with the way out, and nothing trains."""
    path = write_sweep(tmp_path, study__n_trials=1, data__subset=300, data__data_dir=str(data_dir),
                       study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"])
    script = tmp_path / "unguarded.py"
    script.write_text(f"from pipeline import Sweep\nSweep.from_file({str(path)!r}).run(progress=False)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0
    assert 'put its sweep under `if __name__ == "__main__":`' in done.stderr, done.stderr
    assert not store_uris.local_path(store_uris.resolve_uri(stores["storage"])).exists()


def test_a_stop_with_no_trial_of_ours_running_says_so(swept, module_stores):
    """Ctrl-C just after the last trial ended (or while waiting for another machine's) once raised IndexError."""
    study = swept["sweep"].study()
    assert interrupted(study, set(), signal.SIGINT, 0) == "interrupted (Ctrl-C): no trial was running here"
    assert interrupted(study, set(), signal.SIGTERM, 0).startswith("interrupted (SIGTERM): ")


@pytest.mark.parametrize("uri, message", [
    ("sqlite:///{folder}/nowhere.db", "no tracking store at"),
    ("http://127.0.0.1:9", "is unreachable"),
    ("foo://bar", "cannot read the tracking store foo://bar"),
])
def test_results_are_read_only_from_a_tracking_store_that_answers(swept, module_stores, folder, uri, message):
    """Not blank results, and not minutes of MLflow's retries followed by a traceback."""
    elsewhere = Sweep.from_study(NAME, storage=module_stores["storage"], tracking_uri=uri.format(folder=folder))
    for read in (elsewhere.trials, elsewhere.best, elsewhere.report, elsewhere.history, elsewhere.load_model):
        with pytest.raises(TrackingError, match=message):
            read()
    assert not (folder / "nowhere.db").exists()


def test_arguments_of_the_wrong_kind_are_refused_in_one_line(swept, module_stores):
    sweep = swept["sweep"]
    calls = [(lambda: sweep.compare(5), "compare: the other study is a Sweep, a sweep file or a study's name"),
             (lambda: Sweep.from_spec(None), "a sweep file or a study's name, got None"),
             (lambda: Sweep.from_study(None), "study name: must be a non-empty string"),
             (lambda: sweep.export(None), "--out: the folder to export to"),
             (lambda: sweep.report(width=-5), "width: the characters a line may take"),
             (lambda: sweep.report(width="x"), "width: the characters a line may take"),
             (lambda: pipeline.list_studies(storage=5), "--storage: must be a URL")]
    for call, message in calls:
        with pytest.raises(BadInputError, match=message):
            call()


def test_a_dict_s_relative_data_folder_is_recorded_so_the_study_works_from_anywhere(tmp_path, data_dir, monkeypatch):
    """A dict has no file to be relative to: its paths are the current folder's, and the study records its data
    folder absolute, so `from_study` in another folder finds the data."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    (here / "fashion").symlink_to(data_dir)
    stores = {"storage": f"journal:///{tmp_path}/optuna.journal", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    spec = tiny_spec("fashion", **stores)
    spec["study"]["n_trials"] = 1
    monkeypatch.chdir(here)
    Sweep.from_dict(spec).run(progress=False)
    monkeypatch.chdir(elsewhere)
    again = Sweep.from_study(NAME, **stores)
    assert again.study().user_attrs[keys.DATA]["data_dir"] == str((here / "fashion").resolve())
    assert len(again.data().x_test) == 300
