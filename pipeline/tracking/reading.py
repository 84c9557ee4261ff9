"""Reading back: a run's results, a study's trial runs, and where to see them in the MLflow UI."""

from __future__ import annotations

import math

import mlflow

from pipeline import keys, stores
from pipeline.errors import TrackingError
from pipeline.tracking.runs import filter_literal
from pipeline.tracking.store import STORE_ERRORS, check_sqlite_file


def run_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """The latest value of every metric a run logged; empty when the store cannot say (gone, unreachable)."""
    client = _existing_store(tracking_uri)
    try:
        return {} if client is None else dict(client.get_run(run_id).data.metrics)
    except STORE_ERRORS:
        return {}


def test_metric(tracking_uri: str, run_id: str | None, name: str) -> float:
    """A run's test metric `name` (test_accuracy, test_rmse, ...); NaN when it has none (or the store cannot say)."""
    return run_metrics(tracking_uri, run_id).get(name, math.nan) if run_id else math.nan


def metric_history(tracking_uri: str, run_id: str):
    """A run's per-epoch curves, one row per epoch (from 1) and one column per metric logged by epoch (loss,
    accuracy, val_loss, val_accuracy, ...; final results such as test_accuracy are logged at step 0): what its
    learning-curve plot in the MLflow UI shows."""
    import pandas as pd

    client = _existing_store(tracking_uri)
    if client is None:
        raise TrackingError(f"no MLflow store at {stores.printable(tracking_uri)}")
    try:
        names = list(client.get_run(run_id).data.metrics)
        curves = {name: {m.step: m.value for m in client.get_metric_history(run_id, name)} for name in names}
    except STORE_ERRORS as exc:
        raise TrackingError(f"cannot read run {run_id} in {stores.printable(tracking_uri)}: {exc}") from None
    frame = pd.DataFrame({name: pd.Series(steps) for name, steps in curves.items() if max(steps, default=0) >= 1})
    return frame.drop(index=0, errors="ignore").rename_axis("epoch")


def trial_runs_frame(tracking_uri: str, experiment_name: str, study_name: str, run_ids: dict[int, str],
                     metrics: tuple[str, ...]):
    """One row per trial run of a study (run id, status, the final `metrics`, duration), read from MLflow.

    Joined on the run ids the study's trials recorded (`run_ids`: trial number -> run id), not on where the
    study's storage was when they ran: a copied or moved store keeps its runs.
    """
    import pandas as pd

    columns = ["trial", "run_id", "run_status", "duration_s", *metrics]
    client = _existing_store(tracking_uri)
    experiment = None if client is None else client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return pd.DataFrame(columns=columns)
    trial_of = {run_id: number for number, run_id in run_ids.items() if run_id}
    study = f"tags.`{keys.ROLE}` = 'trial' AND tags.`{keys.STUDY}` = {filter_literal(study_name)}"
    runs = client.search_runs([experiment.experiment_id], max_results=50000, filter_string=study)
    return pd.DataFrame([{
        "trial": trial_of[r.info.run_id], "run_id": r.info.run_id, "run_status": r.info.status,
        "duration_s": ((r.info.end_time or r.info.start_time) - r.info.start_time) / 1000,
        **{name: r.data.metrics.get(name) for name in metrics},
    } for r in runs if r.info.run_id in trial_of], columns=columns)


def _existing_store(tracking_uri: str) -> mlflow.MlflowClient | None:
    """A client for the store, or None for a SQLite file that is not there: reading must not create one."""
    uri = stores.resolve_uri(tracking_uri, create=False)
    if stores.is_sqlite(uri) and not stores.sqlite_path(uri).is_file():
        return None
    check_sqlite_file(uri)
    return mlflow.MlflowClient(uri)


def runs_url(tracking_uri: str, experiment_name: str, base_url: str) -> str | None:
    """The experiment's runs view (MLflow 3 opens a bare experiment URL on its GenAI overview)."""
    experiment = mlflow.MlflowClient(stores.resolve_uri(tracking_uri, create=False)).get_experiment_by_name(
        experiment_name)
    return None if experiment is None else f"{base_url}/#/experiments/{experiment.experiment_id}/runs"


def ui_command(tracking_uri: str) -> str:
    """The command that opens this store in the MLflow UI (a server store is opened in a browser)."""
    if stores.is_sqlite(tracking_uri):
        return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"
    return f"open {stores.printable(tracking_uri)} in a browser"
