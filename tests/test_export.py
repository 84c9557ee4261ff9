"""`sweep export` and `sweep predict` on a real smoke sweep: exactness, registry, serving, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import optuna
import pytest
from PIL import Image

from pipeline import cli
from pipeline import stores as store_uris
from pipeline.processes import free_port, start_group, stop_group, wait_for_http
from pipeline.config import load_sweep
from pipeline.data import KERAS_DATASETS, load_splits
from pipeline.data.keras_sets import load_keras_dataset
from pipeline.study import optuna_storage

from conftest import write_sweep


@pytest.fixture(scope="module")
def swept(module_sweep):
    return module_sweep


@pytest.fixture(scope="module")
def exported(swept, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "best"
    assert cli.main(["export", str(swept), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def test_split(swept, data_dir):
    config = load_sweep(swept)
    splits = load_splits(config.data, config.study.seed)
    return splits.x_test, splits.y_test


def best_trial(swept):
    config = load_sweep(swept)
    study = optuna.load_study(study_name=config.study.name, storage=optuna_storage(config.study.storage))
    return config, study.best_trial


def test_export_writes_keras_savedmodel_and_metadata(exported, swept):
    config, best = best_trial(swept)
    assert (exported / "model.keras").is_file() and (exported / "saved_model" / "saved_model.pb").is_file()
    info = json.loads((exported / "metadata.json").read_text())
    assert info["study"] == config.study.name and info["trial_number"] == best.number
    assert info["params"] == best.user_attrs["hyperparameters"]
    assert info["objective"] == {"metric": "val_accuracy", "value": best.value}
    assert info["mlflow"]["trial_run_id"] == best.user_attrs["mlflow_run_id"]
    assert info["class_names"][0] == "T-shirt/top" and len(info["class_names"]) == 10
    assert info["input"] == {"shape": [28, 28], "dtype": "uint8"}
    assert info["refit"] is False and len(info["dataset"]["digest"]) == 16
    assert {"tensorflow", "keras", "mlflow", "optuna"} <= set(info["versions"])
    assert info["exported_by"] == "keras-sweep-pipeline", "the mark --force looks for before replacing a folder"
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")], "no staging folder left"


def test_export_leaves_no_model_copy_in_the_temp_folder(swept, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert cli.main(["export", str(swept), "--out", str(tmp_path / "again"), "--name", "smoke-again"]) == 0
    assert list(scratch.iterdir()) == []


EXACTNESS_SCRIPT = """
import json, sys
import numpy as np, keras, tensorflow as tf
images = np.load(sys.argv[2]); labels = np.load(sys.argv[3])
model = keras.saving.load_model(sys.argv[1] + "/model.keras", safe_mode=True)
keras_accuracy = float(np.mean(model.predict(images, batch_size=1024, verbose=0).argmax(1) == labels))
saved = tf.saved_model.load(sys.argv[1] + "/saved_model")  # keep a reference: its variables live on it
served = saved.serve(tf.constant(images)).numpy()
print(json.dumps({"keras": keras_accuracy, "saved_model": float(np.mean(served.argmax(1) == labels)),
                  "dtype": model.inputs[0].dtype}))
"""


def test_fresh_process_reproduces_the_logged_test_accuracy_on_raw_pixels(exported, swept, test_split, tmp_path):
    """The export alone (safe_mode, no pipeline code) scores exactly what the trial logged."""
    images, labels = test_split
    assert images.dtype == np.uint8
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    result = subprocess.run([sys.executable, "-c", EXACTNESS_SCRIPT, str(exported), str(tmp_path / "x.npy"),
                             str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    config, best = best_trial(swept)
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    logged = client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics["test_accuracy"]
    assert scores["dtype"] == "uint8"
    assert scores["keras"] == pytest.approx(logged, abs=1e-6)
    assert scores["saved_model"] == pytest.approx(logged, abs=1e-6)


def test_registry_alias_points_at_the_export(exported, swept):
    config, _ = best_trial(swept)
    info = json.loads((exported / "metadata.json").read_text())
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    version = client.get_model_version_by_alias("smoke-classifier", "champion")
    assert int(version.version) == info["mlflow"]["version"]
    # The trial's own logged model is what was registered: no rebuild, no second copy.
    assert version.run_id == info["mlflow"]["trial_run_id"]
    assert version.source.startswith("models:/m-"), "registered from the LoggedModel, not the run's artifacts"
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.source_run_id == version.run_id
    links = json.loads(logged.tags["mlflow.modelVersions"])
    assert {"name": "smoke-classifier", "version": version.version} in links, "the UI's link from the model"
    assert f"{info['test_accuracy']:.4f}" in version.description
    export_run = client.get_run(info["mlflow"]["export_run_id"])
    assert export_run.data.tags["sweep.source_run_id"] == info["mlflow"]["trial_run_id"]
    assert export_run.data.metrics["test_accuracy"] == pytest.approx(info["test_accuracy"])


def test_predict_labels_a_png_of_a_test_image(exported, test_split, tmp_path, capsys):
    images, labels = test_split
    import keras

    model = keras.saving.load_model(exported / "model.keras", safe_mode=True)
    probabilities = model.predict(images, verbose=0)
    index = int(np.argmax(np.where(probabilities.argmax(1) == labels, probabilities.max(1), 0)))
    Image.fromarray(images[index]).save(tmp_path / "item.png")
    Image.fromarray(images[index]).convert("RGB").resize((84, 84), Image.NEAREST).save(tmp_path / "big.jpg")
    capsys.readouterr()
    assert cli.main(["predict", str(exported), str(tmp_path / "item.png"), "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["class"] == KERAS_DATASETS["fashion_mnist"].class_names[labels[index]]
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert cli.main(["predict", str(exported / "model.keras"), str(tmp_path / "big.jpg")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'big.jpg'}[0]\t")


def test_predict_reads_idx_and_kaggle_csv(exported, data_dir, tmp_path, capsys):
    raw = load_keras_dataset("fashion_mnist", str(data_dir))
    rows = np.column_stack([raw.y_test[:4], raw.x_test[:4].reshape(4, -1)])
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    np.savetxt(tmp_path / "few.csv", rows, fmt="%d", delimiter=",", header=header, comments="")
    capsys.readouterr()
    assert cli.main(["predict", str(exported), str(tmp_path / "few.csv"),
                     str(data_dir / "t10k-images-idx3-ubyte.gz")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 + 10000


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_right_classes(exported, swept, test_split, tmp_path):
    config, _ = best_trial(swept)
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uris.resolve_uri(config.tracking.tracking_uri)}
    server = start_group(["mlflow", "models", "serve", "-m", "models:/smoke-classifier@champion",
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"))
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        images, labels = test_split
        body = json.dumps({"inputs": images[:50].tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = np.asarray(json.load(urllib.request.urlopen(request, timeout=60))["predictions"])
        import keras

        local = keras.saving.load_model(exported / "model.keras", safe_mode=True).predict(images[:50], verbose=0)
        np.testing.assert_array_equal(answer.argmax(1), local.argmax(1))
        assert np.mean(answer.argmax(1) == labels[:50]) > 0.3
    finally:
        stop_group(server)


def test_refit_retrains_on_train_and_validation(swept, tmp_path, test_split):
    out = tmp_path / "refit"
    assert cli.main(["export", str(swept), "--out", str(out), "--refit", "--name", "smoke-refit"]) == 0
    info = json.loads((out / "metadata.json").read_text())
    config, best = best_trial(swept)
    assert info["refit"] is True and info["trial_number"] == best.number
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    run = client.get_run(info["mlflow"]["export_run_id"])
    assert run.data.tags["sweep.refit"] == "true"
    assert run.data.tags["sweep.source_run_id"] == best.user_attrs["mlflow_run_id"]
    trial_epochs = client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics["epochs_run"]
    assert len(client.get_metric_history(run.info.run_id, "loss")) == trial_epochs
    import keras

    images, labels = test_split
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    accuracy = float(np.mean(model.predict(images, batch_size=1024, verbose=0).argmax(1) == labels))
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6) and accuracy > 0.3


def test_export_by_study_name(swept, tmp_path):
    config, best = best_trial(swept)
    out = tmp_path / "by-name"
    assert cli.main(["export", "--study", config.study.name, "--storage", config.study.storage,
                     "--out", str(out), "--name", "smoke-by-name"]) == 0
    assert json.loads((out / "metadata.json").read_text())["trial_number"] == best.number


def test_existing_export_needs_force(exported, swept, capsys):
    before = (exported / "model.keras").stat().st_mtime_ns
    assert cli.main(["export", str(swept), "--out", str(exported)]) == 2
    assert f"{exported}: already holds an export; pass --force" in capsys.readouterr().err
    assert (exported / "model.keras").stat().st_mtime_ns == before


def test_force_replaces_only_a_folder_this_tool_exported(exported, swept, tmp_path, capsys):
    """--force once deleted any folder: now a folder is replaced only when it holds an export's files alone
    and a metadata.json that export wrote; anything else is refused before anything is read or written."""
    def folder(name: str, files: dict) -> object:
        path = tmp_path / name
        path.mkdir()
        for file, text in files.items():
            (path / file).write_text(text)
        return path

    marked = (exported / "metadata.json").read_text()
    cases = {
        folder("victim", {"important.txt": "x"}): "holds other files (important.txt)",
        folder("project", {"S.yaml": "", "optuna.journal": "", "notes.md": ""}):
            "holds a store (optuna.journal), a sweep file (S.yaml), other files (notes.md)",
        folder("export-plus", {"model.keras": "", "metadata.json": marked, "mine.txt": "x"}):
            "holds other files (mine.txt)",
        folder("unmarked", {"model.keras": "", "metadata.json": '{"study": "x"}'}):
            "holds a metadata.json that `sweep export` did not write",
        folder("garbled", {"metadata.json": "{"}): "holds a metadata.json that `sweep export` did not write",
        folder("no-metadata", {"model.keras": ""}): "holds model.keras but no metadata.json",
    }
    for out, message in cases.items():
        before = sorted((p.name, p.read_text()) for p in out.iterdir())
        assert cli.main(["export", str(swept), "--out", str(out), "--force"]) == 2, out
        assert f"{out}: {message}, so it is not an earlier export to replace" in capsys.readouterr().err
        assert sorted((p.name, p.read_text()) for p in out.iterdir()) == before, "nothing touched"
    assert (tmp_path / "victim" / "important.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in cases), "nothing staged beside"


def test_force_replaces_an_export_written_before_exports_were_marked(exported, swept, tmp_path):
    """An export from an earlier version has no exported_by mark, but its metadata's own run ids say what it is."""
    old = tmp_path / "old"
    shutil.copytree(exported, old)
    info = json.loads((old / "metadata.json").read_text())
    del info["exported_by"]
    (old / "metadata.json").write_text(json.dumps(info))
    assert cli.main(["export", str(swept), "--out", str(old), "--force", "--name", "smoke-unmarked"]) == 0
    assert json.loads((old / "metadata.json").read_text())["exported_by"] == "keras-sweep-pipeline"


QUIET_NOISE = ("cuda", "cuinit", "has no artifacts", "successfully registered", "created version", "traceback")


def test_export_and_predict_say_only_their_own_lines(swept, test_split, tmp_path):
    """In a process of their own, as a user runs them: no TensorFlow CUDA start-up lines, and registration
    from the trial's LoggedModel (models:/m-...), so MLflow has nothing to add to the summary."""
    out = tmp_path / "quiet"
    export = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", str(swept), "--out", str(out),
                             "--name", "smoke-quiet"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    Image.fromarray(test_split[0][0]).save(tmp_path / "one.png")
    predict = subprocess.run([sys.executable, "-m", "pipeline.cli", "predict", str(out), str(tmp_path / "one.png")],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    for result in (export, predict):
        noise = [line for line in result.stderr.splitlines() if any(n in line.lower() for n in QUIET_NOISE)]
        assert not noise, noise
    assert export.stdout.startswith("Exported trial #") and "registered as smoke-quiet version 1" in export.stdout


def test_a_file_system_refusal_names_the_export_not_the_tracking_store(swept, tmp_path, capsys):
    """A name the file system takes but whose hidden staging folder beside it is too long: the move fails, and
    the error is the export's (it once read "cannot log to sqlite...")."""
    out = tmp_path / ("e" * 240)
    assert cli.main(["export", str(swept), "--out", str(out), "--name", "smoke-long-name"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sweep: error: {out}: cannot write the export (") and err.count("\n") == 1, err
    assert "File name too long" in err and "cannot log to" not in err, err
    assert list(tmp_path.iterdir()) == [], "nothing half-written"


def test_unknown_study_lists_the_ones_that_exist(swept, tmp_path, capsys):
    config, _ = best_trial(swept)
    assert cli.main(["export", "--study", "nope", "--storage", config.study.storage,
                     "--out", str(tmp_path / "x")]) == 1
    assert "no study named 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_study_without_complete_trial_is_refused(swept, tmp_path, capsys):
    config, _ = best_trial(swept)
    path = write_sweep(tmp_path, study__name="empty-study", study__storage=config.study.storage,
                       tracking__tracking_uri=config.tracking.tracking_uri)
    optuna.create_study(study_name="empty-study", storage=optuna_storage(config.study.storage))
    assert cli.main(["export", str(path), "--out", str(tmp_path / "x")]) == 1
    assert "study 'empty-study' has 0 COMPLETE trial(s); run the sweep (further) first" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"], "nothing half-written"


def test_predict_bad_inputs_exit_2_naming_them(exported, tmp_path, capsys):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    (tmp_path / "bad.csv").write_text("a,b,c\n1,2,3\n")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 damaged")
    cases = [
        ([str(exported), str(tmp_path / "junk.png")], f"{tmp_path / 'junk.png'}: cannot decode the image"),
        ([str(exported), str(tmp_path / "bad.csv")], f"{tmp_path / 'bad.csv'}: expected 784 or 785 columns"),
        ([str(tmp_path / "broken.keras"), str(tmp_path / "junk.png")],
         f"{tmp_path / 'broken.keras'}: cannot be read as a Keras model file"),
        ([str(tmp_path / "absent"), str(tmp_path / "junk.png")], "no model here"),
        ([str(exported), str(tmp_path / "missing.png")], "missing.png: no such input file"),
    ]
    for argv, message in cases:
        assert cli.main(["predict", *argv]) == 2, argv
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_an_export_killed_midway_leaves_the_registry_and_the_old_export_alone(swept, tmp_path):
    """SIGKILL once the staging folder appears: the alias, the old export and its metadata are untouched;
    the next export clears the leftovers and ends the dead export's run."""
    config, _ = best_trial(swept)
    out = tmp_path / "a"
    assert cli.main(["export", str(swept), "--out", str(out), "--name", "smoke-killed"]) == 0
    before = json.loads((out / "metadata.json").read_text())
    command = [sys.executable, "-m", "pipeline.cli", "export", str(swept), "--out", str(out), "--name", "smoke-killed",
               "--force"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(tmp_path.glob(".a.staging-*")):
        assert process.poll() is None and time.time() < deadline, "the export ended before it staged anything"
        time.sleep(0.02)
    process.kill()
    process.wait()
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    assert int(client.get_model_version_by_alias("smoke-killed", "champion").version) == before["mlflow"]["version"]
    assert json.loads((out / "metadata.json").read_text()) == before and (out / "model.keras").is_file()
    experiment = client.get_experiment_by_name(config.experiment_name).experiment_id
    dead = client.search_runs([experiment], "tags.`sweep.role` = 'export' AND attributes.status = 'RUNNING'")
    assert len(dead) == 1, "the killed export's run is left RUNNING until the next command"
    assert cli.main(["export", str(swept), "--out", str(out), "--name", "smoke-killed", "--force"]) == 0
    assert not list(tmp_path.glob(".a.*")), "stale staging folders are cleared"
    ended = client.get_run(dead[0].info.run_id)
    assert ended.info.status == "KILLED" and "died" in ended.data.tags["sweep.error"]
    after = json.loads((out / "metadata.json").read_text())
    assert after["mlflow"]["version"] == before["mlflow"]["version"] + 1
    assert int(client.get_model_version_by_alias("smoke-killed", "champion").version) == after["mlflow"]["version"]


def test_export_uses_the_data_the_study_ran_on_and_refuses_other_data(tmp_path, data_dir, stores, capsys):
    """The study records its data (relative to the sweep file's folder); export finds it again without
    --data-dir, and refuses data with another digest, naming both."""
    own = tmp_path / "data"
    raw = load_keras_dataset("fashion_mnist", str(data_dir))
    from test_bad_inputs import write_idx

    write_idx(own, 255 - raw.x_train, raw.y_train, 255 - raw.x_test, raw.y_test)  # another dataset, same layout
    path = write_sweep(tmp_path, study__n_trials=1, data__subset=400, data__test_subset=100, data__data_dir=str(own),
                       study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"],
                       search_space__epochs=1)
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(stores["storage"]))
    assert study.user_attrs["data"]["data_dir"] == "data", "recorded relative to the sweep file's folder"
    client = mlflow.MlflowClient(store_uris.resolve_uri(stores["tracking_uri"]))
    (trial_run,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-smoke").experiment_id],
                                      "tags.`sweep.role` = 'trial'")
    source = trial_run.inputs.dataset_inputs[0].dataset.source
    assert "data" in source and str(tmp_path) not in source, f"no home paths in a shared store: {source}"
    unchanged = write_sweep(tmp_path, "smoke.yaml", "other.yaml", study__n_trials=1, data__subset=400,
                            data__test_subset=100, study__storage=stores["storage"],
                            tracking__tracking_uri=stores["tracking_uri"], search_space__epochs=1)
    assert cli.main(["export", str(unchanged), "--out", str(tmp_path / "x"), "--name", "own-data"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(unchanged), "--out", str(tmp_path / "y"), "--name", "own-data",
                     "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "was run on the data in data (digest" in err and f"the data in {data_dir}" in err
    assert "pass --data-dir with the study's data" in err and not (tmp_path / "y").exists()
    assert cli.main(["run", str(path), "--no-progress", "--n-trials", "2", "--data-dir", str(data_dir)]) == 2
    assert "give this data its own study.name" in capsys.readouterr().err


def test_export_and_confirm_count_the_complete_trials_in_the_same_words(tmp_path, data_dir, capsys):
    """A constrained study whose three COMPLETE trials all break its limit: export said it had 3 COMPLETE
    trials, confirm that it had 0; both now give the count and how many meet the constraints."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    path = write_sweep(tmp_path, study__storage=storage, tracking__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                       data__data_dir=str(data_dir), study__constraints={"max_params": 10})
    study = optuna.create_study(study_name="fashion-mnist-smoke", storage=storage, direction="maximize")
    for value in (0.5, 0.6, 0.7):
        study.add_trial(optuna.trial.create_trial(value=value, constraints={"max_params": 3.0},
                                                  user_attrs={"hyperparameters": {}, "mlflow_run_id": "x"}))
    said = "study 'fashion-mnist-smoke' has 3 COMPLETE trial(s), 0 of them within the study's constraints; "
    assert cli.main(["export", str(path), "--out", str(tmp_path / "e")]) == 1
    assert said + "run the sweep (further) first" in capsys.readouterr().err
    assert cli.main(["confirm", str(path), "--top-k", "2", "--no-progress"]) == 2
    assert said + "cannot confirm the top 2" in capsys.readouterr().err


def test_tensorflow_loads_quietly_and_still_takes_its_thread_cap():
    """The devices are created while stderr is silenced, and the worker's thread cap is set before that."""
    probe = ("from pipeline.tensorflow_setup import load_tensorflow; load_tensorflow(threads=2); "
             "import tensorflow as tf; print(tf.config.threading.get_intra_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "2", result.stderr
    assert result.stderr == "", result.stderr
