"""Bench row p, tracking side: how many trial runs per second one `mlflow server` (PostgreSQL backend store,
proxied artifacts, its default workers) takes from N client processes.

Each client is a machine forked as in bench/storage_load.py, and logs trials through pipeline.tracking's own
calls, as pipeline.trial does for one trial with nothing trained: a nested run under the study's one parent
(its params and tags), the training data as its input, per-epoch curves, its results, then a small artifact
logged by run id after the run ended (a trial's report; its plots and model are left out: drawing them is the
machine's CPU, not the server's).
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from fleet import error_kind, fresh_database, run_fleet, summarise
from pipeline import tracking
from pipeline.processes import mlflow_server

SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"  # attached to the parent run
EXPERIMENT, STUDY, STORAGE = "bench-tracking-load", "bench-tracking-load", "bench"
EPOCHS = 5
PARAMS = {"units": 64, "dropout": 0.2, "activation": "relu", "optimizer": "adam", "learning_rate": 0.001,
          "epochs": EPOCHS, "batch_size": 64, "preprocessing": "normalize"}
RESULTS = {"test_accuracy": 0.85, "test_loss": 0.4, "epochs_run": EPOCHS, "peak_rss_mb": 900.0,
           "params_count": 100_000.0, "model_mb": 0.4, "latency_ms": 0.5}


def measure_tracking(sizes: tuple[int, ...], postgres: str, window_s: float) -> dict[str, dict]:
    """One fresh server and parent run; then, for each size in turn, that many clients for window_s."""
    figures = {}
    # MLflow's telemetry, in clients forked from one process (a real worker is spawned), now and then failed a call
    # with KeyError '_MLFLOW_TELEMETRY_SESSION_ID'; it is no part of what the server takes.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    with tracking_server(postgres) as uri:
        parent_id = _in_fork(_open_parent, uri)
        for n in sizes:
            records = run_fleet(n, lambda number: _connect(uri, parent_id, number), _runs, window_s)
            figures[str(n)] = {**summarise(records, window_s, "runs"), "load_avg": os.getloadavg()[0]}
    return figures


@contextlib.contextmanager
def tracking_server(postgres: str) -> Iterator[str]:
    """An `mlflow server` on a loopback port, as the README starts one: PostgreSQL backend, proxied artifacts."""
    with fresh_database(postgres) as (url, _, _), tempfile.TemporaryDirectory() as artifacts:
        _in_fork(_create_schema, url)  # the server's worker processes would race to create it
        with mlflow_server(url, "--artifacts-destination", artifacts) as uri:
            yield uri


def _in_fork(function, *args):
    """function(*args) in a forked process, its result back: this process keeps no connection its later forks
    would share."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    process = context.Process(target=lambda: results.put(function(*args)))
    process.start()
    result = results.get(timeout=300)
    process.join()
    return result


def _create_schema(url: str) -> None:
    import mlflow

    mlflow.MlflowClient(url).search_experiments()


def _open_parent(uri: str) -> str:
    tracker = tracking.connect(uri, EXPERIMENT)
    return tracking.open_parent_run(tracker, STUDY, STORAGE, SWEEP, {})


def _connect(uri: str, parent_id: str, machine: int):
    """What a worker sets up once: the store and experiment, and its training data's dataset record."""
    tracker = tracking.connect(uri, EXPERIMENT)
    features = np.zeros((200, 8), dtype=np.float32)
    dataset = tracking.numpy_dataset(features, np.zeros(200, dtype=np.int64), name="bench-train",
                                     source="/data/bench", digest="bench")
    return tracker, parent_id, dataset, machine


def _runs(connected, end: float, errors: collections.Counter) -> dict:
    tracker, parent_id, dataset, machine = connected
    seconds, last, number = [], None, 100_000 * machine  # trial numbers no two machines share
    while time.time() < end:
        start = time.perf_counter()
        try:
            _one_trial(tracker, parent_id, dataset, number)
        except Exception as exc:
            errors[error_kind("run", exc)] += 1
            continue
        finally:
            number += 1
        seconds.append(time.perf_counter() - start)
        last = time.time()
    return {"done": len(seconds), "last": last, "run": seconds}


def _one_trial(tracker: tracking.Tracker, parent_id: str, dataset, number: int) -> None:
    with tracking.trial_run(tracker, parent_id, STUDY, STORAGE, number, PARAMS) as run:
        run.log_dataset(dataset)
        for epoch in range(1, EPOCHS + 1):
            run.log_epoch(epoch, {"loss": 1 / epoch, "accuracy": 0.8, "val_loss": 1 / epoch, "val_accuracy": 0.8})
        run.log_results(RESULTS)
    run.log_report({"accuracy": 0.85, "per_class": {str(c): 0.85 for c in range(10)}}, "classification_report")

