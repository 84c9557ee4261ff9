"""Export the best trial as a model to ship: raw 28x28 uint8 images in, 10 class probabilities out.

The export is checked before it is written: evaluated on the raw test images it must reproduce the
test accuracy the trial logged. Files are built in a temporary folder and renamed into place at the end,
so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np

from pipeline import tracking
from pipeline.config import SweepConfig
from pipeline.data import CLASS_NAMES, Splits, array_digest
from pipeline.errors import ExportError
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import build_model, build_serving_model
from pipeline.preprocessing import Scaler, prepare
from pipeline.search_space import params_of
from pipeline.study import EPOCHS_ATTR, RUN_ID_ATTR, best_complete_trial, load_existing_study, load_splits
from pipeline.training import TEST_BATCH, score, start_fresh, train_and_evaluate

KERAS_FILE, SAVED_MODEL_DIR, METADATA_FILE = "model.keras", "saved_model", "metadata.json"
EXACTNESS = 1e-6


def export_best(config: SweepConfig, out: Path, refit: bool = False, name: str | None = None,
                force: bool = False) -> dict:
    """Write model.keras, saved_model/ and metadata.json for the study's best trial; return the metadata."""
    out = Path(out)
    _check_destination(out, force)
    study = load_existing_study(config.study.storage, config.study.name)
    best = best_complete_trial(study)
    params, source_run = params_of(best), best.user_attrs[RUN_ID_ATTR]
    splits = load_splits(config)[1]
    tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
    registered_name = name or config.tracking.registered_model or config.study.name
    with tracking.export_run(tracker, config.study.name, best.number, source_run, params.as_dict(), refit) as run:
        if refit:
            model, scaler = _refit(params, splits, best.user_attrs[EPOCHS_ATTR], run)
            expected = None
        else:
            model = tracking.load_trial_model(source_run)
            scaler = Scaler.from_dict(tracking.load_trial_preprocessing(source_run))
            expected = tracking.logged_metric(source_run, "test_accuracy")
        serving = build_serving_model(model, scaler)
        test_accuracy = evaluate_raw(serving, splits.x_test, splits.y_test)
        if expected is not None and abs(test_accuracy - expected) > EXACTNESS:
            raise ExportError(f"the exported model scores {test_accuracy:.6f} on the raw test images but trial "
                              f"{best.number} logged {expected:.6f}; refusing to write an inexact export")
        run.log_results({"test_accuracy": test_accuracy})
        version = run.register_champion(serving, splits.x_test[:2], registered_name)
        info = _metadata(config, best, params, source_run, splits, test_accuracy, refit, run.run_id,
                         registered_name, version)
        _write_atomically(out, serving, info, force)
    return info


def evaluate_raw(model, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of a serving model on raw uint8 images, scored exactly as the trials are."""
    return score(model.predict(images, batch_size=TEST_BATCH, verbose=0), labels)[0]


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: already holds files (an earlier export?); pass --force to replace it "
                          "or choose another --out")


def _refit(params: Hyperparameters, splits: Splits, epochs: int, run) -> tuple:
    """Retrain the best params on train + validation for the epochs the trial ran; test is still only reported."""
    empty = splits.x_val[:0], splits.y_val[:0]
    combined = Splits(np.concatenate([splits.x_train, splits.x_val]), np.concatenate([splits.y_train, splits.y_val]),
                      *empty, splits.x_test, splits.y_test)
    data = prepare(params.preprocessing, combined)
    params = Hyperparameters.from_dict({**params.as_dict(), "epochs": epochs})
    start_fresh(0)
    model = build_model(params)
    train_and_evaluate(model, data, params, hooks=[run.log_epoch])
    return model, data.scaler


def _metadata(config, best, params, source_run, splits, test_accuracy, refit, export_run, name, version) -> dict:
    return {
        "study": config.study.name, "trial_number": best.number, "params": params.as_dict(),
        "objective": {"metric": config.study.metric, "value": best.value},
        "test_accuracy": test_accuracy, "trial_test_accuracy": best.user_attrs.get("test_accuracy"),
        "test_images": int(len(splits.y_test)), "class_names": list(CLASS_NAMES),
        "input": {"shape": [28, 28], "dtype": "uint8", "range": [0, 255]},
        "mlflow": {"trial_run_id": source_run, "export_run_id": export_run,
                   "registered_model": name, "version": version, "alias": tracking.CHAMPION,
                   "model_uri": f"models:/{name}@{tracking.CHAMPION}"},
        "dataset_digest": array_digest(splits.x_train, splits.y_train),
        "refit": refit, "versions": _versions(),
    }


def _versions() -> dict:
    names = ("tensorflow", "keras", "mlflow", "optuna", "numpy", "keras-sweep-pipeline")
    return {n: package_metadata.version(n) for n in names}


def _write_atomically(out: Path, serving, info: dict, force: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would make the export private to its writer
        serving.save(staging / KERAS_FILE)
        serving.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        (staging / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if out.exists() and force:
            shutil.rmtree(out)
        elif out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
