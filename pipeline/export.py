"""Export the best trial as a model to ship: the trial's own model, raw input in, class probabilities (or, for a
regression, the value in the label's units) out.

Where the study has a confirmation (pipeline.confirmation), the best is its winner, the configuration with
the best mean validation over its seeds, and the model shipped is that configuration's seed with the best
validation score; the metadata gives the task's headline test metric (test_accuracy; a regression's
test_rmse) as mean ± sd over the seeds beside the model's own.

No rebuild: the model a trial logged already holds its preprocessing, so export takes it as it is (or,
with --refit, trains the same model on train + validation). The export is checked before it is written:
evaluated on the raw test set it must reproduce the headline test metric the trial logged. Files are built in
a temporary folder and renamed into place at the end, so a failed export leaves nothing half-written; an
existing folder is replaced only when this tool exported it (its metadata.json says so), never a user's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
import optuna

from pipeline import builders, keys, tracking
from pipeline.config import TASK_TEST_METRICS, Constraints, SweepConfig, check_model_name
from pipeline.data import Splits, describe_folder, load_splits, located_folder
from pipeline.errors import BadInputError, DataError, ExportError
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import Design, build_model, model_inputs
from pipeline.preprocessing import fit_stats
from pipeline.processes import pid_alive
from pipeline.study import load_existing_study
from pipeline.tracking import models
from pipeline.winner import Winner, winner, winner_within
from pipeline.tasks import TASKS
from pipeline.training import TEST_BATCH, start_fresh, train_and_evaluate

KERAS_FILE, SAVED_MODEL_DIR, METADATA_FILE = "model.keras", "saved_model", "metadata.json"
# metadata.json's mark: --force replaces a folder only when it holds this tool's export files and this mark.
EXPORTED_BY = ("exported_by", "keras-sweep-pipeline")
STORE_SUFFIXES, SWEEP_SUFFIXES = (".journal", ".db", ".sqlite"), (".yaml", ".yml")
STAGING, REPLACED = "staging", "replaced"  # hidden folders beside --out, named with the writer's pid
EXACTNESS = 1e-6  # relative to the metric's size: a regression's test_rmse is in the label's units


def export_best(config: SweepConfig, out: Path, refit: bool = False, name: str | None = None,
                force: bool = False, data_given: bool = False, limits: Constraints = Constraints()) -> dict:
    """Write model.keras, saved_model/ and metadata.json for the study's best trial; return the metadata.

    The data is the study's own (as it recorded it) unless `data_given` (--data-dir on the command line);
    either way it must be the data the study ran on.
    """
    out = Path(os.path.abspath(out))  # "." and "x/.." named as the folders they are
    registered_name = check_model_name(name, "--name") if name else check_model_name(
        config.registered_model_name, f"{config.path}: study.name (the default registered model name)")
    _check_destination(out, force)
    study = load_existing_study(config.study.storage, config.study.name)
    tracker = tracking.connect(config.tracking.tracking_uri, config.experiment_name)
    best = winner_within(study, limits) if limits else winner(study, config, tracker.tracking_uri)
    params, source_run = Hyperparameters.from_dict(best.params), best.run_id
    data = _study_data(study, config, data_given)
    tracking.end_dead_export_runs(tracker, config.study.name)
    _remove_stale_staging(out)
    logged = tracking.run_metrics(tracker.tracking_uri, source_run)
    design = builders.design(config, study.user_attrs.get(keys.BUILDER)) if refit else None  # a changed builder: no run
    with tracking.export_run(tracker, config.study.name, config.storage_identity, best.number, source_run,
                             params.used(config.model.family, config.task), refit) as run:
        if refit:
            model = _refit(params, data, int(logged[keys.EPOCHS_RUN]), run, design)
            scores = evaluate(model, data.x_test, data.y_test, config.task)
            model_uri = models.log_model(model, data.x_test[:2], data.class_names)
        else:
            model_uri = models.trial_model_uri(source_run)
            model = models.load_model(model_uri)
            scores = evaluate(model, data.x_test, data.y_test, config.task)
            _check_exact(config.test_metric, scores[config.test_metric], logged.get(config.test_metric), best.number)
        run.log_results(scores)
        info = _metadata(config, best, params, logged, data, scores, refit, run.run_id, registered_name)
        _write_in_place(out, model, info)
        # Registered only once the files are in place: the alias never points at an export that is not there.
        info["mlflow"]["version"] = models.register_champion(model_uri, registered_name, _description(info))
        _replace_file(out / METADATA_FILE, json.dumps(info, indent=2) + "\n")
    return info


def _study_data(study: optuna.Study, config: SweepConfig, data_given: bool) -> Splits:
    """The data the study ran on: its recorded folder unless --data-dir says otherwise, and checked by digest."""
    recorded = study.user_attrs.get(keys.DATA)
    if recorded and not data_given:
        folder = located_folder(recorded["data_dir"], config.folder)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=folder))
    data = load_splits(config.data, config.study.seed)
    if recorded and recorded["digest"] != data.train_digest():
        raise DataError(
            f"study '{config.study.name}' was run on {describe_folder(recorded['data_dir'])} (digest "
            f"{recorded['digest']}), but {describe_folder(config.data.data_dir)} has digest {data.train_digest()}; "
            "pass --data-dir with the study's data")
    return data


def evaluate(model, inputs: np.ndarray, labels: np.ndarray, task: str) -> dict[str, float]:
    """The task's test metrics of a model on raw inputs, scored exactly as the trials are."""
    outputs = model.predict(model_inputs(inputs), batch_size=TEST_BATCH, verbose=0)
    return TASKS[task].score(outputs, labels)


def _check_destination(out: Path, force: bool) -> None:
    """--out is replaced whole, so it must be a new or empty folder, or (with --force) an earlier export: any
    other folder is refused, --force or not, naming what it holds (bad input: the user names another --out)."""
    if out.is_symlink():  # replacing it would put a folder where the link was, and leave its target as it was
        if not out.exists():
            raise BadInputError(f"{out}: is a symlink to {os.readlink(out)}, which does not exist or loops back on "
                                "itself; give a real folder as --out")
        raise BadInputError(f"{out}: is a symlink to {os.readlink(out)}; an export replaces --out whole, so give "
                            f"the real folder, --out {os.path.realpath(out)}")
    _check_parents(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        foreign = _foreign_contents(out)
        if foreign:
            raise BadInputError(f"{out}: holds {foreign}, so it is not an earlier export to replace (--out is "
                                "replaced whole); choose a new or empty folder, e.g. --out export")
        if not force:
            raise BadInputError(f"{out}: already holds an export; pass --force to replace it, or choose another "
                                "--out")
    working = Path.cwd().resolve()
    if out.resolve() in (working, *working.parents):
        raise BadInputError(f"{out}: is the working folder or holds it; an export goes in a folder of its own, "
                            "e.g. --out export")


def _check_parents(out: Path) -> None:
    """Missing folders above --out are made, so the nearest one that exists must be a folder, and none of them a
    symlink to nothing (or to itself): found now, not after the model is trained or loaded."""
    for parent in out.parents:
        if parent.is_symlink() and not parent.exists():
            raise BadInputError(f"{parent}: is a symlink to {os.readlink(parent)}, which does not exist or loops back "
                                "on itself; give an --out in a real folder")
        if parent.exists():
            if not parent.is_dir():
                raise BadInputError(f"{parent}: is a file, not a folder; give an --out in a folder, e.g. --out "
                                    "export")
            return


def _foreign_contents(out: Path) -> str | None:
    """What in `out` is not an export's (in words), or None for a folder this tool exported."""
    names = sorted(p.name for p in out.iterdir())
    stores = [n for n in names if n == "mlruns" or n.endswith(STORE_SUFFIXES)]
    sweeps = [n for n in names if n.endswith(SWEEP_SUFFIXES)]
    others = [n for n in names if n not in (KERAS_FILE, SAVED_MODEL_DIR, METADATA_FILE, *stores, *sweeps)]
    parts = [f"{what} ({_listed(found)})" for what, found in (("a store", stores), ("a sweep file", sweeps),
                                                                ("other files", others)) if found]
    if parts:
        return ", ".join(parts)
    if not (out / METADATA_FILE).is_file():
        return f"{_listed(names)} but no {METADATA_FILE}"
    if not _marked(out / METADATA_FILE):
        return f"a {METADATA_FILE} that `sweep export` did not write"
    return None


def _marked(metadata: Path) -> bool:
    """metadata.json says this tool wrote it: the mark, or (exports from before the mark) its own run ids."""
    try:
        info = json.loads(metadata.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(info, dict):
        return False
    unmarked = isinstance(info.get("mlflow"), dict) and {"trial_run_id", "export_run_id"} <= info["mlflow"].keys()
    return info.get(EXPORTED_BY[0]) == EXPORTED_BY[1] or (unmarked and {"study", "trial_number"} <= info.keys())


def _listed(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _check_exact(metric: str, measured: float, logged: float | None, trial_number: int) -> None:
    """The model about to be shipped scores on the raw test set what its trial logged, in the headline metric."""
    if logged is None:
        raise ExportError(f"trial {trial_number}'s run logged no {metric}, so the export cannot be checked against "
                          "it; export another trial or pass --refit")
    if abs(measured - logged) > EXACTNESS * max(1.0, abs(logged)):
        raise ExportError(f"the exported model's {metric} is {measured:.6f} on the raw test set but trial "
                          f"{trial_number} logged {logged:.6f}; refusing to write an inexact export")


def _refit(params: Hyperparameters, data: Splits, epochs: int, run, design: Design):
    """The best params on train + validation for the epochs the trial ran; test is still only reported."""
    combined = data.with_validation_in_train()
    params = params.replace(epochs=epochs)
    start_fresh(0)
    stats = fit_stats(combined.x_train, combined.fills_gaps, combined.regression_targets)
    model = build_model(params, combined.inputs, len(combined.class_names), stats, design)
    train_and_evaluate(model, combined, params, hooks=[run.log_epoch], task=design.task, stats=stats)
    return model


def _metadata(config: SweepConfig, best: Winner, params: Hyperparameters, logged: dict,
              data: Splits, scores: dict[str, float], refit: bool, export_run: str, name: str) -> dict:
    """What the export is: the task's test metrics of the shipped model (test_accuracy and test_loss; a
    regression's test_rmse, test_mae and test_r2) beside the headline its trial logged, and what it predicts:
    the class names, or a regression's label (the one value out, in its units)."""
    headline = config.test_metric
    return {
        EXPORTED_BY[0]: EXPORTED_BY[1],
        "study": config.study.name, "trial_number": best.number, "task": config.task,
        "params": params.used(config.model.family, config.task),
        "objective": {"metric": config.study.metric, "value": best.value},
        **scores, f"trial_{headline}": logged.get(headline), "test_images": int(len(data.y_test)),
        **({"label": data.class_names[0]} if config.task == "regression" else {"class_names": list(data.class_names)}),
        "costs": {key: logged.get(key) for key in (keys.PARAMS_COUNT, keys.MODEL_BYTES, keys.LATENCY_B1,
                                                   keys.LATENCY_B256, keys.LATENCY_THREADS)},
        "input": data.inputs.describe(),
        "confirmation": _confirmation_info(best, headline),
        "mlflow": {"trial_run_id": best.run_id, "export_run_id": export_run,
                   "registered_model": name, "version": None, "alias": keys.CHAMPION,
                   "model_uri": f"models:/{name}@{keys.CHAMPION}"},
        "dataset": {"source": data.source, "digest": data.train_digest()},
        "refit": refit, "versions": _versions(),
    }


def _confirmation_info(best: Winner, headline: str) -> dict | None:
    """The objective and the headline test metric as mean and sd over the confirmed seeds
    (test_accuracy_mean, test_accuracy_sd; a regression's test_rmse_mean, test_rmse_sd)."""
    c = best.confirmed
    if c is None:
        return None
    return {"seeds": len(c.values), "objective_mean": c.mean, "objective_sd": c.std, f"{headline}_mean": c.test_mean,
            f"{headline}_sd": c.test_std, "shipped_seed_run_id": best.run_id}


def _description(info: dict) -> str:
    """The registered version's description, in the headline test metric ("test accuracy", "test rmse")."""
    how = "refit on train + validation" if info["refit"] else "the trial's own model"
    headline = next(iter(TASK_TEST_METRICS[info["task"]]))
    said = headline.replace("_", " ")
    text = (f"Study '{info['study']}', trial #{info['trial_number']} ({how}): "
            f"{info['objective']['metric']} {info['objective']['value']:.4f}, "
            f"{said} {info[headline]:.4f} on {info['test_images']} test inputs.")
    confirmed = info["confirmation"]
    if confirmed:
        text += (f" Confirmed over {confirmed['seeds']} seeds: {said} {confirmed[f'{headline}_mean']:.4f} "
                 f"± {confirmed[f'{headline}_sd']:.4f} (this model's own: {info[headline]:.4f}).")
    return text


def _versions() -> dict:
    names = ("tensorflow", "keras", "mlflow", "optuna", "numpy", "keras-sweep-pipeline")
    return {n: package_metadata.version(n) for n in names}


def _write_in_place(out: Path, model, info: dict) -> None:
    """All files in a hidden staging folder beside `out`, then renamed into place. An earlier export is
    renamed aside first and deleted after: `out` is missing only between two renames, never half-written.

    A file system's refusal (a full disk, no permission) is the export's, not the tracking store's: it names `out`.
    """
    try:
        _stage_and_rename(out, model, info)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write the export ({exc}); free the space or fix the folder's "
                          "permissions, or choose another --out") from exc


def _stage_and_rename(out: Path, model, info: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{STAGING}-{os.getpid()}-", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would make the export private to its writer
        model.save(staging / KERAS_FILE)
        model.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        (staging / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            aside = out.with_name(f".{out.name}.{REPLACED}-{os.getpid()}")
            out.rename(aside)
            staging.rename(out)
            shutil.rmtree(aside)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed into place


def _replace_file(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def _remove_stale_staging(out: Path) -> None:
    """Staging and set-aside folders left by an export that was killed (its process is gone)."""
    for leftover in out.parent.glob(f".{out.name}.*-*"):
        kind, _, rest = leftover.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind in (STAGING, REPLACED) and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
