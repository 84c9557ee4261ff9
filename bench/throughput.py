"""Bench row m: trials per hour, and where a trial's time goes besides training.

One fixed configuration (the reference model at batch 256, 3 epochs, on the full Fashion-MNIST split)
trained N times by `sweep run`, so every trial does the same work and what differs between pipeline
versions is the fixed cost. Each trial's time is cut, from its MLflow run, into: training epochs (the
median epoch times the epochs), the first epoch's extra (building and tracing the model, logging the
dataset), after training (test scoring, measurements, plots, model logging) and between runs (Optuna,
a new worker's start-up). Several pipeline checkouts (e.g. before and after a change) run alternately in
one bench run, so their ratio is measured side by side. Run through bench/run.py.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TRIALS, EPOCHS, REPEATS = 20, 3, 2
FIXED = {"units": 128, "hidden_layers": 1, "dropout": 0.2, "activation": "relu", "optimizer": "adam",
         "learning_rate": 0.001, "epochs": EPOCHS, "batch_size": 256, "preprocessing": "normalize"}


def row_m(data_dir: str, sweeps: Path, checkouts: dict[str, Path]) -> dict:
    """checkouts: label -> a pipeline checkout's root; each runs REPEATS times, alternating."""
    arms: dict[str, list[dict]] = {label: [] for label in checkouts}
    for _ in range(REPEATS):
        for label, root in checkouts.items():
            arms[label].append(_one_sweep(root, data_dir, sweeps))
    return {"trials": TRIALS, "epochs": EPOCHS, "config": FIXED, "arms": arms,
            "trials_per_hour": {label: statistics.median(r["trials_per_hour"] for r in runs)
                                for label, runs in arms.items()}}


def _one_sweep(root: Path, data_dir: str, sweeps: Path) -> dict:
    raw = yaml.safe_load((sweeps / "fashion_mnist.yaml").read_text())
    raw["study"].update(n_trials=TRIALS, timeout=None, pruner="none", name="throughput")
    raw["search_space"] = dict(FIXED)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "throughput.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        command = [sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress", "--data-dir", data_dir,
                   "--storage", f"sqlite:///{tmp}/optuna.db", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
        start = time.time()
        subprocess.run(command, cwd=root, check=True, capture_output=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(root)})
        wall = time.time() - start
        return {"wall_s": wall, "trials_per_hour": 3600 * TRIALS / wall, **breakdown(f"sqlite:///{tmp}/mlflow.db",
                                                                                       start, start + wall)}


def breakdown(uri: str, start: float, end: float, experiment: str | None = None) -> dict:
    """Seconds per trial (medians) in each part, and the sweep's start-up and tail, from the MLflow runs of the
    command that ran from `start` to `end` (row a's resumed studies hold earlier commands' runs too)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment or client.search_experiments()[0].name)
    runs = sorted((r for r in client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'trial'")
                   if r.info.start_time / 1000 >= start), key=lambda r: r.info.start_time)
    parts = {"epoch": [], "first_epoch_extra": [], "after_training": [], "between": []}
    for index, run in enumerate(runs):
        stamps = [m.timestamp / 1000 for m in sorted(client.get_metric_history(run.info.run_id, "loss"),
                                                     key=lambda m: m.step)]
        epoch = statistics.median([b - a for a, b in zip(stamps, stamps[1:])] or [0.0])  # 0: a one-epoch trial
        parts["epoch"].append(epoch)
        parts["first_epoch_extra"].append(stamps[0] - run.info.start_time / 1000 - epoch)
        parts["after_training"].append(run.info.end_time / 1000 - stamps[-1])
        if index:
            parts["between"].append(run.info.start_time / 1000 - runs[index - 1].info.end_time / 1000)
    return {**{name: statistics.median(values) if values else 0.0 for name, values in parts.items()},
            "between_max": max(parts["between"], default=0.0), "startup": runs[0].info.start_time / 1000 - start,
            "tail": end - runs[-1].info.end_time / 1000}


def render_m(r: dict) -> list[str]:
    lines = ["## m. Trials per hour: the fixed cost of a trial", "",
             f"`sweep run` of one fixed configuration (128 relu units, batch 256, {r['epochs']} epochs, full "
             f"training split), {r['trials']} trials, no pruning, each arm run {len(next(iter(r['arms'].values())))} "
             "times alternately. Seconds are medians per trial, from each trial's MLflow run.", "",
             "| pipeline | trials/hour | wall s | epoch s | first-epoch extra s | after training s | between "
             "trials s (max) | start-up s | tail s |", "|---|---|---|---|---|---|---|---|---|"]
    for label, runs in r["arms"].items():
        mid = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        lines.append(f"| {label} | {r['trials_per_hour'][label]:.0f} | {mid['wall_s']:.0f} | {mid['epoch']:.2f} | "
                     f"{mid['first_epoch_extra']:.2f} | {mid['after_training']:.2f} | {mid['between']:.2f} "
                     f"({mid['between_max']:.1f}) | {mid['startup']:.1f} | {mid['tail']:.1f} |")
    return lines + ["", *_reading(r), ""]


def _reading(r: dict) -> list[str]:
    """What the table says: each arm's fixed cost per trial against its training time."""
    parts = []
    for label, runs in r["arms"].items():
        mid = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        fixed = mid["first_epoch_extra"] + mid["after_training"] + mid["between"]
        parts.append(f"{label}: {fixed:.2f} s of fixed cost per trial against {r['epochs'] * mid['epoch']:.1f} s "
                     f"of training ({100 * fixed / (fixed + r['epochs'] * mid['epoch']):.0f}%)")
    return ["Reading: " + "; ".join(parts) + ". The first-epoch extra is building and tracing the model; "
            "after training is scoring the test set, measuring the model and ending the run (plots and the "
            "model, once about a second here, are now logged on a background thread while the next trial "
            "trains: they still take CPU, which shows in the next trial's first epoch); between trials is "
            "Optuna's ask and tell. The maximum between trials is a worker replacement "
            "(`study.trials_per_process`)."]
